target "a" {
  tags = ["a:1"]
  args = { X = "x" }
}
target "b" {
  tags = concat(target.a.tags, ["b:1"])
  args = { FROM_A = target.a.args.X, UNSET = target.a.target == null ? "yes" : "no" }
}
