# expect: {path}:3:1: app "t": RUN: heredocs are not supported
FROM alpine
RUN cat <<EOF > /x
hello
EOF
