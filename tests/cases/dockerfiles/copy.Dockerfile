FROM alpine:3.19
ARG OWNER=app
COPY --chown=${OWNER}:${OWNER} --chmod=0644 ["app/main.py", "/srv/"]
ADD notes.txt /srv/notes.txt
ADD --link app /srv/app/
COPY *.txt /docs/
COPY . /ctx/
COPY ./app/../go.mod \
     /
