# expect: {path}:3:1: app "t": RUN needs a command
FROM alpine
RUN --network=none
