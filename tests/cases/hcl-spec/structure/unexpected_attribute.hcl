a = "a value"
c = "not in the spec"
