# expect: {path}:3:1: app "t": COPY needs at least one source and a destination
FROM alpine
COPY go.mod
