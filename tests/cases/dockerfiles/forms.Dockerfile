FROM scratch
ENV NAME=web PORT=8080
ENV GREETING hello   world
ENV QUOTED="a \"b\" c" SINGLE='$NAME' ESC=\$NAME
ENV DEF=${UNSET:-fallback} ALT=${NAME:+set} EMPTYALT=${UNSET:+x} BR=${NAME}-x DASH=${EMPTY-unset}
LABEL org.opencontainers.image.title="$NAME app" \
      maintainer=me
EXPOSE $PORT 53/udp 9000/TCP
WORKDIR /srv/$NAME
USER ${NAME}
RUN echo $NAME
RUN ["sh", "-c", "echo $NAME"]
run --network=none true
ENTRYPOINT exec app --port $PORT
CMD ["--verbose"]
