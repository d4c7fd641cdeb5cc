# expect: {path}:3:1: app "t": RUN --mount: target "cache" must be an absolute path
FROM alpine
RUN --mount=type=cache,target=cache true
