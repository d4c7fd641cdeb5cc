# expect: {dir}/missing_from.hcl:2:1: app "web": missing required attribute "from"
app "web" {
  apt = ["curl"]
}
