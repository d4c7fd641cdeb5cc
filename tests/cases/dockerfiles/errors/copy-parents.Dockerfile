# expect: {path}:3:1: app "t": COPY --parents is not supported
FROM alpine
COPY --parents app/main.py /x/
