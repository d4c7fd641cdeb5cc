# Bodies, blocks and labels (spec: Structural Elements): labels may be quoted or
# identifiers; a one-line block holds one attribute.
service "web" {
  port = 80
}
service api {
  port = 8080
}
single { name = "one" }
