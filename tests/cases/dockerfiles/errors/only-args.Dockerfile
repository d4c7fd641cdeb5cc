# expect: {path}: app "t": no FROM instruction
ARG A=1
