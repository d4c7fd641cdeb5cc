# expect: {path}:3:1: app "t": COPY --from=1: only an earlier stage can be copied from
FROM alpine
COPY --from=1 /x /y
FROM alpine
