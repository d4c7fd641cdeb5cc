# expect: {path}:2:1: app "t": FROM: expected "FROM [--platform=...] IMAGE [AS NAME]"
FROM alpine as
