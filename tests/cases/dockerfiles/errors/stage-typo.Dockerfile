# expect: {path}:4:1: app "t": COPY --from=buidl: no such stage (did you mean "build"?)
FROM alpine AS build
FROM alpine
COPY --from=buidl /x /y
