# expect: {dir}/bad_set_value.hcl:3:1: variable "REPLICAS": --set value "many" is not a number
# set: REPLICAS=many
variable "REPLICAS" {
  default = 2
}
