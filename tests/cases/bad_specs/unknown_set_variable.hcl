# expect: --set VERSON: no variable "VERSON" is declared in the specs (did you mean "VERSION"?)
# set: VERSON=2
variable "VERSION" {
  default = "1"
}
