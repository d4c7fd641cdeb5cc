# expect: {path}:3:1: app "t": COPY: heredocs mixed with other sources are not supported
FROM alpine
COPY <<EOF notes.txt /x/
hello
EOF
