# expect: {dir}/unknown_variable.hcl:5:20: image "base": unknown reference "var.VERSON" (did you mean "var.VERSION"?)
variable "VERSION" { default = "1" }

image "base" {
  from = "debian:${var.VERSON}"
}
