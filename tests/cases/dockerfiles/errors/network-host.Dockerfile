# expect: {path}:3:1: app "t": RUN --network="host" is not supported (use none or default)
FROM alpine
RUN --network=host true
