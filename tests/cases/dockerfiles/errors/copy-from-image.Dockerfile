# expect: {path}:3:1: app "t": COPY --from=nginx:1.25: copying from an image that is not a stage of this Dockerfile is not supported
FROM alpine
COPY --from=nginx:1.25 /etc/nginx /etc/nginx
