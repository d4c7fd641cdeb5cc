variable "TAG" {
  default = "1.0"
}

target "web" {
  args = {
    CHANNEL = "beta"
  }
  output = ["type=oci,dest=out/web.tar"]
}
