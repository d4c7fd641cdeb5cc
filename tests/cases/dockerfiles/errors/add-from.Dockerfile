# expect: {path}:4:1: app "t": unknown flag "--from" for ADD
FROM alpine AS a
FROM alpine
ADD --from=a /x /y
