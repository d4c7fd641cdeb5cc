# expect: {path}:3:1: app "t": ADD "https://example.com/x.tgz": fetching a URL or git repository is refused by the network policy (builds are offline); add the file to the build context or download it in a RUN step
FROM alpine
ADD https://example.com/x.tgz /x
