# expect: {dir}/wrong_type_list.hcl:4:3: app "web": attribute "apt": expected a list of strings, found a string
app "web" {
  from = "debian:bookworm"
  apt  = "curl"
}
