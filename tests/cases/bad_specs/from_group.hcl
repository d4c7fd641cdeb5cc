# expect: {dir}/from_group.hcl:11:3: app "web": from: a group (group.all) cannot be used as an image
image "python" {
  from = "debian:bookworm"
}

group "all" {
  targets = [image.python]
}

app "web" {
  from = group.all
}
