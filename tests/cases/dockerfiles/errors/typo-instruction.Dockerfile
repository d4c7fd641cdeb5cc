# expect: {path}:3:1: app "t": unsupported instruction "COPPY" (did you mean "COPY"?)
FROM alpine
COPPY a b
