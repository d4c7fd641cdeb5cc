target "web" {}
