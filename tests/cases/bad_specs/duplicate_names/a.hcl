# expect: {dir}/b.hcl:2:1: app "web": already defined at {dir}/a.hcl:2:1
app "web" {
  from = "debian:bookworm"
}
