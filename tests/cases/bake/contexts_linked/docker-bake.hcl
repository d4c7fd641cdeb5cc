target "base" {
  dockerfile = "baseapp.Dockerfile"
}
target "app" {
  contexts = {
    baseapp = "target:base"
    alpine  = "docker-image://alpine:3.13"
    src     = "../path/to/source"
  }
}
