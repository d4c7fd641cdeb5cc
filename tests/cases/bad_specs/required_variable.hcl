# expect: {dir}/required_variable.hcl:2:1: variable "TOKEN" is required: set it with --set TOKEN=... or the environment
variable "TOKEN" {
  description = "no default"
}

image "base" {
  from = "debian:${var.TOKEN}"
}
