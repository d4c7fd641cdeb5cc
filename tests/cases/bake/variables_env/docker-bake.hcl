variable "TAG" {
  default = "latest"
}
variable "TAGS" {
  default = ["latest"]
  type = list(string)
}
variable "REPLICAS" {
  default = 1
}
variable "DEBUG" {
  type = bool
  default = false
}
variable "FOO" {
  type = string
  default = "foo"
}
variable "FOO_JSON" {
  type = string
  default = "foo"
}
variable "VERSIONS" {
  type = map(number)
  default = {}
}
variable "UNSET" {}

target "webapp-dev" {
  dockerfile = "Dockerfile.webapp"
  tags = concat(["docker.io/username/webapp:${TAG}"], [for tag in TAGS: "docker.io/username/webapp:${tag}"])
  args = {
    REPLICAS = REPLICAS + 1
    DEBUG = DEBUG
    FOO = FOO
    FOO_JSON = FOO_JSON
    GO = VERSIONS.go
    UNSET = "[${UNSET}]"
  }
}
