# expect: {path}:3:1: app "t": WORKDIR: DIR: set DIR first
FROM alpine
WORKDIR ${DIR:?set DIR first}
