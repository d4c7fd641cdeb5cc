# expect: {path}:2:1: app "t": RUN before the first FROM
RUN true
FROM alpine
