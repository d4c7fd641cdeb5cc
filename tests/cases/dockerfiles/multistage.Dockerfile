# A Go build stage, an unnamed-by-reference runtime base, and the app.
ARG GO=1.22
FROM golang:${GO} AS build
WORKDIR /src
COPY go.mod main.go ./
RUN --mount=type=cache,target=/root/.cache/go-build,id=gobuild \
    go build -o /out/app .

FROM debian:bookworm-slim AS Runtime-Base
RUN apt-get update

FROM runtime-base
COPY --from=build /out/app /usr/local/bin/app
COPY --from=0 /src/go.mod /doc/
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["--help"]
