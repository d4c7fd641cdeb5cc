FROM busybox:latest
RUN mkdir -p /opt/shared /var/empty \
 && echo "shared by every service" > /opt/shared/README \
 && chmod 0750 /var/empty \
 && ln -s /opt/shared/README /README \
 && rm /bin/vi
ENV LANG=C.UTF-8
WORKDIR /srv
