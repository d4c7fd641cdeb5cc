# expect: {path}:3:1: app "t": RUN --mount=type=cache needs a target
FROM alpine
RUN --mount=type=cache,id=x true
