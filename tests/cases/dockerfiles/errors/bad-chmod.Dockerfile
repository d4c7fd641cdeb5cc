# expect: {path}:3:1: app "t": COPY --chmod="u+x": expected an octal mode like 0755
FROM alpine
COPY --chmod=u+x go.mod /x
