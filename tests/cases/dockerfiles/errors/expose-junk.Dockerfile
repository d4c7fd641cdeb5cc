# expect: {path}:3:1: app "t": EXPOSE: "http" is not a port
FROM alpine
EXPOSE 80 http
