# expect: {path}:3:1: app "t": COPY source "nope.txt": no such file or directory in the build context (context {context})
FROM alpine
COPY nope.txt /x
