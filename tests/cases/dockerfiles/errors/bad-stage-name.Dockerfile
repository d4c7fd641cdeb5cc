# expect: {path}:2:1: app "t": FROM: invalid stage name "1st"
FROM alpine AS 1st
