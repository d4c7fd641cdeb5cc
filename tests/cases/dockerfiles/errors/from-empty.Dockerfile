# expect: {path}:3:1: app "t": FROM: "${BASE}" is empty after substitution
ARG BASE
FROM ${BASE}
