FROM busybox:latest AS vendored
COPY cmd/ /src/cmd/
RUN cd /src && find cmd -type f | sort > /modules.txt

FROM vendored AS validate
RUN test -s /modules.txt

FROM scratch AS update
COPY --from=vendored /modules.txt /modules.txt

FROM vendored AS outdated
RUN echo "nothing outdated" > /outdated
