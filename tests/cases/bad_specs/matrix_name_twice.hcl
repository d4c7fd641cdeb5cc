# expect: {dir}/matrix_name_twice.hcl:5:3: app "web": the matrix makes the app name "web-3.11" twice; use every matrix key in "name"
app "web" {
  from   = "debian:bookworm"
  matrix = { py = ["3.11", "3.12"], os = ["a", "b"] }
  name   = "web-${matrix.py}"
}
