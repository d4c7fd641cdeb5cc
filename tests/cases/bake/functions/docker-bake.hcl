function "increment" {
  params = [number]
  result = number + 1
}
function "tags" {
  params = [name]
  variadic_params = versions
  result = [for v in versions : "${name}:${v}"]
}

target "webapp-dev" {
  dockerfile = "Dockerfile.webapp"
  tags = tags("docker.io/username/webapp", "1", "latest")
  args = {
    buildno = "${add(123, 1)}"
    next = "${increment(123)}"
  }
}
