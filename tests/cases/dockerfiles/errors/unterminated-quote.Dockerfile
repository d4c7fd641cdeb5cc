# expect: {path}:3:1: app "t": ENV: unterminated double quote in '"a b'
FROM alpine
ENV A="a b
