# expect: {path}:3:1: app "t": RUN: the JSON form must be an array of strings
FROM alpine
RUN ["echo", 1]
