hasindex "list" {
  call   = [hasindex(["a", "b"], 1), hasindex(["a"], 1), hasindex({ k = 1 }, "k")]
  result = [true, false, true]
  type   = tuple([bool, bool, bool])
}
index "tuple" {
  call   = index(["a", "b"], 1)
  result = "b"
}
index "map" {
  call   = index({ k = "v" }, "k")
  result = "v"
}
index "missing" {
  call  = index(["a"], 3)
  error = "invalid index"
}
length "list" {
  call   = length([1, 2, 3])
  result = 3
}
length "object and set" {
  call   = [length({ a = 1, b = 2 }), length(toset(["x", "x"]))]
  result = [2, 1]
  type   = tuple([number, number])
}
length "string" {
  # pipeline: go-cty's length takes collections only; strings count characters here
  call   = length("abc")
  result = 3
}
length "number" {
  call  = length(5)
  error = "must be a list, a map or a tuple"
}
element "wraps around" {
  call   = element(["a", "b", "c"], 4)
  result = "b"
}
element "negative" {
  call   = element(["a", "b", "c"], -1)
  result = "c"
}
element "empty" {
  call  = element([], 0)
  error = "empty"
}
coalescelist "first non empty" {
  call   = coalescelist([], ["a"], ["b"])
  result = ["a"]
  type   = tuple([string])
}
coalescelist "none" {
  call  = coalescelist([], [])
  error = "no non-null arguments"
}
compact "drops empty strings and nulls" {
  call   = compact(["a", "", null, "b"])
  result = ["a", "b"]
  type   = list(string)
}
contains "present" {
  call   = contains(["a", "b"], "b")
  result = true
}
contains "type matters" {
  call   = contains([1, 2], "1")
  result = false
}
contains "set" {
  call   = contains(toset(["x"]), "x")
  result = true
}
distinct "keeps first" {
  call   = distinct(["b", "a", "b", "c", "a"])
  result = ["b", "a", "c"]
  type   = list(string)
}
distinct "unifies to a list" {
  call   = distinct([1, "1"])
  result = ["1"]
  type   = list(string)
}
chunklist "sizes" {
  call   = chunklist(["a", "b", "c"], 2)
  result = [["a", "b"], ["c"]]
  type   = list(list(string))
}
chunklist "zero keeps one chunk" {
  call   = chunklist([1, 2], 0)
  result = [[1, 2]]
  type   = list(list(number))
}
flatten "nested" {
  call   = flatten([[1, [2, 3]], [], 4])
  result = [1, 2, 3, 4]
  type   = tuple([number, number, number, number])
}
flatten "not a list" {
  call  = flatten("a")
  error = "must be a list, set or tuple"
}
keys "object is a tuple" {
  call   = keys({ b = 1, a = 2 })
  result = ["a", "b"]
  type   = tuple([string, string])
}
keys "map is a list" {
  call   = keys(tomap({ b = 1, a = 2 }))
  result = ["a", "b"]
  type   = list(string)
}
values "object" {
  call   = values({ b = "x", a = 2 })
  result = [2, "x"]
  type   = tuple([number, string])
}
values "map" {
  call   = values(tomap({ b = 1, a = 2 }))
  result = [2, 1]
  type   = list(number)
}
lookup "found" {
  call   = lookup({ a = "x" }, "a", "d")
  result = "x"
}
lookup "default" {
  call   = lookup({ a = "x" }, "b", "d")
  result = "d"
}
lookup "map default converts" {
  call   = lookup(tomap({ a = "x" }), "b", 5)
  result = "5"
}
lookup "two arguments" {
  # pipeline: go-cty requires the default; the two-argument form is kept
  call   = lookup({ a = "x" }, "a")
  result = "x"
}
lookup "missing without default" {
  call  = lookup({ a = "x" }, "b")
  error = "no key \"b\""
}
merge "objects" {
  call   = merge({ a = 1, b = 2 }, { b = "x" }, null)
  result = { a = 1, b = "x" }
  type   = object({ a = number, b = string })
}
merge "maps stay maps" {
  call   = merge(tomap({ a = "1" }), tomap({ b = "2" }))
  result = { a = "1", b = "2" }
  type   = map(string)
}
merge "not a map" {
  call  = merge({ a = 1 }, [1])
  error = "must be a map or an object"
}
reverselist "tuple" {
  call   = reverselist([1, "a", true])
  result = [true, "a", 1]
  type   = tuple([bool, string, number])
}
reverselist "set to list" {
  call   = reverselist(toset(["a", "b"]))
  result = ["b", "a"]
  type   = list(string)
}
setproduct "lists" {
  call   = setproduct(["a", "b"], [1, 2])
  result = [["a", 1], ["a", 2], ["b", 1], ["b", 2]]
  type   = list(tuple([string, number]))
}
setproduct "with a set" {
  call   = setproduct(toset(["x"]), ["y"])
  result = [["x", "y"]]
  type   = set(tuple([string, string]))
}
setproduct "one argument" {
  call  = setproduct(["a"])
  error = "at least two"
}
slice "tuple" {
  call   = slice(["a", "b", "c", "d"], 1, 3)
  result = ["b", "c"]
  type   = tuple([string, string])
}
slice "list" {
  call   = slice(tolist([1, 2, 3]), 0, 1)
  result = [1]
  type   = list(number)
}
slice "out of range" {
  call  = slice([1, 2], 1, 3)
  error = "greater than the length"
}
zipmap "tuple values" {
  call   = zipmap(["a", "b"], [1, "two"])
  result = { a = 1, b = "two" }
  type   = object({ a = number, b = string })
}
zipmap "list values" {
  call   = zipmap(["a"], tolist([1]))
  result = { a = 1 }
  type   = map(number)
}
zipmap "lengths differ" {
  call  = zipmap(["a"], [1, 2])
  error = "does not match"
}
concat "tuples" {
  call   = concat(["a"], [], [1])
  result = ["a", 1]
  type   = tuple([string, number])
}
concat "lists unify" {
  call   = concat(tolist(["a"]), tolist([1]))
  result = ["a", "1"]
  type   = list(string)
}
range "one" {
  call   = range(3)
  result = [0, 1, 2]
  type   = list(number)
}
range "down" {
  call   = range(3, 0)
  result = [3, 2, 1]
  type   = list(number)
}
range "step" {
  call   = range(0, 1, 0.25)
  result = [0, 0.25, 0.5, 0.75]
  type   = list(number)
}
range "zero step" {
  call  = range(0, 1, 0)
  error = "must not be zero"
}
sethaselement "yes" {
  call   = sethaselement(toset(["a", "b"]), "b")
  result = true
}
setunion "strings" {
  call   = setunion(["b", "a"], ["c", "a"])
  result = ["a", "b", "c"]
  type   = set(string)
}
setintersection "common" {
  call   = setintersection(["a", "b", "c"], ["b", "c", "d"], ["c", "b"])
  result = ["b", "c"]
  type   = set(string)
}
setsubtract "difference" {
  call   = setsubtract(["a", "b", "c"], ["b"])
  result = ["a", "c"]
  type   = set(string)
}
setsymmetricdifference "either but not both" {
  call   = setsymmetricdifference([1, 2, 3], [3, 4])
  result = [1, 2, 4]
  type   = set(number)
}
indexof "found" {
  call   = indexof(["a", "b", "c"], "c")
  result = 2
}
indexof "missing" {
  call  = indexof(["a"], "z")
  error = "item not found"
}
