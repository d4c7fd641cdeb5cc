# expect: {dir}/interpolated_null.hcl:7:20: image "base": cannot interpolate null into a string
locals {
  suite = null
}

image "base" {
  from = "debian:${local.suite}"
}
