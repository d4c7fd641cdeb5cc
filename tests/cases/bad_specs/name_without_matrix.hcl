# expect: {dir}/name_without_matrix.hcl:4:3: app "web": attribute "name" only applies together with "matrix"
app "web" {
  from = "debian:bookworm"
  name = "web-1"
}
