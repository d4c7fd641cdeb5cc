# expect: {dir}/wrong_type_map.hcl:4:3: app "web": attribute "env": expected a map of strings, found an object with a list at key "B"
app "web" {
  from = "debian:bookworm"
  env  = { A = "1", B = ["x"] }
}
