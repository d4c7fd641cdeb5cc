variable "REPLICAS" {
  default = 1
}
target "default" {
  args = { REPLICAS = REPLICAS }
}
