target "default" {
  dockerfil = "Dockerfile"
}
