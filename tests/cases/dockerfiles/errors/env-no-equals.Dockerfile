# expect: {path}:3:1: app "t": ENV: "B" is not of the form KEY=VALUE
FROM alpine
ENV A=1 B
