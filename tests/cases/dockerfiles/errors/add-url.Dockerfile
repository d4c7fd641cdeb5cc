# expect: {path}:3:1: app "t": ADD of a URL is not supported ("https://example.com/x.tgz"); download it in a RUN step
FROM alpine
ADD https://example.com/x.tgz /x
