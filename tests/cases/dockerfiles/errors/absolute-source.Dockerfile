# expect: {path}:3:1: app "t": COPY source "/etc/passwd": refused: absolute path; COPY sources are relative to the context
FROM alpine
COPY /etc/passwd /x
