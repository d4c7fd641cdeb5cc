# expect: {dir}/inherits_image.hcl:7:15: app "web": attribute "inherits": expected app blocks, found image.python
image "python" {
  from = "debian:bookworm"
}

app "web" {
  inherits = [image.python]
}
