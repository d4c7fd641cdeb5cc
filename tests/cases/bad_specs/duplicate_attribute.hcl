# expect: {dir}/duplicate_attribute.hcl:5:3: app "web": attribute "apt" is already set at {dir}/duplicate_attribute.hcl:4:3
app "web" {
  from = "debian:bookworm"
  apt  = ["curl"]
  apt  = ["git"]
}
