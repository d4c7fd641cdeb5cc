# expect: {path}:3:1: app "t": COPY source "../secret": refused: leaves the build context
FROM alpine
COPY ../secret /x
