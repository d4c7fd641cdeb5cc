# expect: {path}:3:1: app "t": RUN --network="bridge" is not supported (use none, host or default)
FROM alpine
RUN --network=bridge true
