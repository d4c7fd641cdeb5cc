# expect: {dir}/unknown_group_target.hcl:7:3: group "all": attribute "targets": unknown target "wbe" (did you mean "web"?)
app "web" {
  from = "debian:bookworm"
}

group "all" {
  targets = ["wbe"]
}
