FROM busybox:latest AS docgen
ARG FORMATS
COPY cmd/ /src/cmd/
RUN mkdir -p /out && for f in /src/cmd/*.sh; do echo "# $(basename "$f") (${FORMATS})" > "/out/$(basename "$f" .sh).md"; done

FROM scratch AS update
COPY --from=docgen /out /

FROM docgen AS validate
RUN test -s /out/tool.md
