# expect: {dir}/from_matrix_block.hcl:8:3: app "tool": from: app.web is a matrix block; name one of its apps: app.web-3.11, app.web-3.12
app "web" {
  from   = "debian:bookworm"
  matrix = { py = ["3.11", "3.12"] }
}

app "tool" {
  from = app.web
}
