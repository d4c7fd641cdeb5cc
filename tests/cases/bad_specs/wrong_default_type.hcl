# expect: {dir}/wrong_default_type.hcl:4:3: variable "PORT": attribute "default": expected a number, found a string
variable "PORT" {
  type    = number
  default = "eighty"
}
