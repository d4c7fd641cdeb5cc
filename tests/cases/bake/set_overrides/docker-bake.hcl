target "foo-a" {
  tags = ["a"]
  args = { base = "1" }
}
target "foo-b" {
  tags = ["b"]
}
target "bar" {
  inherits = ["foo-a"]
}
