try "first that works" {
  call   = try(nope.x, [1][5], "fallback")
  result = "fallback"
}
try "keeps the type" {
  call   = try(["a", "b"][1], null)
  result = "b"
}
try "all fail" {
  call  = try(nope, [1][3])
  error = "no argument could be evaluated"
}
can "yes and no" {
  call   = [can(1 + 1), can(nope), can({}.a)]
  result = [true, false, false]
  type   = tuple([bool, bool, bool])
}
convert "type expression" {
  call   = convert([1, 2], set(string))
  result = ["1", "2"]
  type   = set(string)
}
convert "impossible" {
  call  = convert("x", number)
  error = "a number is required"
}
