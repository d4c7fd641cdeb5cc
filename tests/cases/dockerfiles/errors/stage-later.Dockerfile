# expect: {path}:3:1: app "t": COPY --from=later: only an earlier stage can be copied from
FROM alpine AS first
COPY --from=later /x /y
FROM alpine AS later
