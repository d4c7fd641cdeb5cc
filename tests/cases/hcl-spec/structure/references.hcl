a = foo.bar
b = [for x in baz : x.y]
c = "${qux[0]}"
