FROM base
ARG SERVICE
ARG PORT=80
ARG CHANNEL
COPY src/${SERVICE}/ /srv/${SERVICE}/
RUN echo "${SERVICE} on ${PORT} (${CHANNEL})" > /srv/${SERVICE}/banner \
 && chmod 0755 /srv/${SERVICE}/run.sh
ENV SERVICE=${SERVICE} PORT=${PORT}
EXPOSE ${PORT}
USER 1000:1000
ENTRYPOINT ["/bin/sh", "-c", "exec /srv/${SERVICE}/run.sh"]
