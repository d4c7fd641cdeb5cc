# expect: {dir}/syntax_error.hcl:4:18: syntax error: unexpected '"', expected "," or "]"
app "web" {
  from = "debian:bookworm"
  apt  = ["curl" "git"]
}
