ARG VERSION=1.0
ARG REGISTRY
ARG UNUSED=zzz
FROM ${REGISTRY:-docker.io}/library/alpine:3.19
# global ARGs are not visible in a stage until declared there
RUN echo "$VERSION"
ARG VERSION
ARG MODE=dev
ENV MODE=prod
RUN echo $VERSION $MODE
ARG LATE=${VERSION}-late NOVALUE
RUN echo $LATE
FROM scratch
# ARGs do not cross stages
RUN echo $VERSION
