# expect: {path}:3:1: app "t": ARG: invalid name "1X"
FROM alpine
ARG 1X=2
