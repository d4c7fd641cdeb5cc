FROM busybox:latest
COPY cmd/ /src/cmd/
RUN for f in /src/cmd/*.sh; do sh -n "$f"; done
