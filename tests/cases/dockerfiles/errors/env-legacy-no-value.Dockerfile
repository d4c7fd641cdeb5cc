# expect: {path}:3:1: app "t": ENV needs a value for "A"
FROM alpine
ENV A
