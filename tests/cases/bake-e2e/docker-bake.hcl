variable "TAG" {
  default = "dev"
}
variable "REGISTRY" {
  default = "localhost:5000/e2e"
}

function "image" {
  params = [name]
  result = "${REGISTRY}/${name}:${TAG}"
}

group "default" {
  targets = ["web", "svc", "tools"]
}

target "_common" {
  dockerfile = "service.Dockerfile"
  contexts = {
    base = "target:base"
  }
  args = {
    CHANNEL = "stable"
  }
  labels = {
    "org.opencontainers.image.vendor" = "pipeline e2e"
  }
}

target "base" {
  dockerfile = "base.Dockerfile"
  tags = [image("base")]
}

target "web" {
  inherits = ["_common"]
  args = {
    SERVICE = "web"
    PORT = 8080
  }
  tags = [image("web")]
}

target "svc" {
  name = "svc-${item.name}"
  matrix = {
    item = [
      { name = "api", port = 9000 },
      { name = "worker", port = 9100 },
    ]
  }
  inherits = ["_common"]
  args = {
    SERVICE = item.name
    PORT = item.port
  }
  tags = [image(item.name)]
}

target "tools" {
  context = "tools"
  dockerfile = "Dockerfile"
  target = "tools"
  tags = [image("tools")]
}
