# expect: {path}:3:1: app "t": ENV: unsupported modifier '/' in '${A/x/y}'
FROM alpine
ENV B=${A/x/y}
