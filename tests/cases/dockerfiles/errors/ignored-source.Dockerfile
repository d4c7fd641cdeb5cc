# expect: {path}:3:1: app "t": COPY source "debug.log": excluded by the context's ignore file (context {context})
FROM alpine
COPY debug.log /x
