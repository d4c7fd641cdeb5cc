# expect: {dir}/dockerfile_with_apt.hcl:4:3: app "legacy": attribute "apt" cannot be used together with "dockerfile"
app "legacy" {
  dockerfile = "Dockerfile"
  apt        = ["curl"]
}
