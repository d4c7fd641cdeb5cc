# expect: {dir}/bad_variable_type.hcl:3:3: variable "PORTS": attribute "type": unsupported type lst(string); expected one of string, number, bool, list(string), map(string) (did you mean "list(string)"?)
variable "PORTS" {
  type    = lst(string)
  default = []
}
