# A small fleet whose cache keys are frozen in keys.json: a refactor that changes any
# key (or the image configs) fails tests/test_golden.py.
variable "TAG" { default = "1" }

image "base" {
  from = "busybox:latest"
  run { command = "mkdir -p /opt && echo base > /opt/base" }
  env { A = "1" }
  workdir = "/srv"
  user    = "1000:1000"
}

app "one" {
  from       = image.base
  apt        = ["curl", "ca-certificates"]
  pip        = ["flask==3.0.3", "requests"]
  source     = "ctx"
  workdir    = "/app"
  entrypoint = ["/bin/sh", "-c", "cat /app/a.txt"]
  expose     = [8080]
  labels     = { team = "a" }
  tags       = ["acme/one:${var.TAG}"]
}

app "two" {
  inherits = [app.one]
  pip      = ["requests", "flask==3.0.3"]
  source   = "ctx/sub"
  env      = { B = "2" }
}

app "docker" {
  dockerfile = "Dockerfile"
  context    = "ctx"
}
