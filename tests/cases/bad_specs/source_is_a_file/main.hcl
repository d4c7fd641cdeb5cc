# expect: {dir}/main.hcl:4:3: app "web": source is not a directory: {dir}/web.txt
app "web" {
  from   = "debian:bookworm"
  source = "web.txt"
}
