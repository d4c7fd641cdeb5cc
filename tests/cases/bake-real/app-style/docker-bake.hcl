variable "REGISTRY" {
  default = "registry.example.com/acme"
}
variable "TAG" {
  default = "latest"
}
variable "BUILD_DATE" {
  default = formatdate("YYYY-MM-DD'T'hh:mm:ssZ", timestamp())
}
variable "SERVICES" {
  type    = list(string)
  default = ["api", "worker"]
}

function "tags" {
  params = [name]
  result = TAG == "latest" ? ["${REGISTRY}/${name}:latest"] : ["${REGISTRY}/${name}:${TAG}", "${REGISTRY}/${name}:latest"]
}

group "default" {
  targets = ["services"]
}

target "_labels" {
  labels = {
    "org.opencontainers.image.created" = BUILD_DATE
    "org.opencontainers.image.source"  = "https://example.com/acme/platform"
  }
}

target "base" {
  context    = "base"
  dockerfile = "Dockerfile"
  tags       = tags("base")
}

target "services" {
  name       = svc
  matrix     = { svc = SERVICES }
  inherits   = ["_labels"]
  context    = "services/${svc}"
  contexts   = { base = "target:base" }
  args       = { SERVICE = svc }
  tags       = tags(svc)
  platforms  = [BAKE_LOCAL_PLATFORM]
  cache-from = ["type=registry,ref=${REGISTRY}/${svc}:cache"]
}
