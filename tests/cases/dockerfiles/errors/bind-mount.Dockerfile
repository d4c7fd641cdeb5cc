# expect: {path}:3:1: app "t": RUN --mount=type=bind is not supported (only type=cache)
FROM alpine
RUN --mount=target=/src make
