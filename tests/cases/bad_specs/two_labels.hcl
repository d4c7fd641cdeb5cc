# expect: {dir}/two_labels.hcl:2:1: app blocks take exactly one name: app "NAME" { ... }
app "web" "extra" {
  from = "debian:bookworm"
}
