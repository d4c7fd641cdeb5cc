# expect: {path}:3:1: app "t": RUN --mount: option "uid" is not supported for cache mounts
FROM alpine
RUN --mount=type=cache,target=/c,uid=1000 true
