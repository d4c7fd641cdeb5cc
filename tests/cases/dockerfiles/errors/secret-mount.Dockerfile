# expect: {path}:3:1: app "t": RUN --mount=type=secret is not supported in Dockerfiles yet
FROM alpine
RUN --mount=type=secret,id=npm,target=/root/.npmrc npm ci
