target "plain" {}
target "image" {
  output = [{ type = "image", name = "foo" }]
}
target "tarball" {
  output = ["type=tar,dest=hi.tar"]
}
