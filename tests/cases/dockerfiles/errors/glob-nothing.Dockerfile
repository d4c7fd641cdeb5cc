# expect: {path}:3:1: app "t": COPY source "*.rs": no such file or directory in the build context (context {context})
FROM alpine
COPY *.rs /x/
