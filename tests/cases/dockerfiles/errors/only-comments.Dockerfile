# expect: {path}: app "t": empty Dockerfile (no instructions)
# nothing here
