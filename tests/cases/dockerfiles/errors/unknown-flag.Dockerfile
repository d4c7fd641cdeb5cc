# expect: {path}:4:1: app "t": unknown flag "--form" for COPY (did you mean "--from"?)
FROM alpine AS a
FROM alpine
COPY --form=a /x /y
