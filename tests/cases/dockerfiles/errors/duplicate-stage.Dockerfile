# expect: {path}:3:1: app "t": FROM: duplicate stage name "A"
FROM alpine AS a
FROM alpine AS A
