# expect: {dir}/missing_source.hcl:4:3: app "web": source directory not found: {dir}/services/nope
app "web" {
  from   = "debian:bookworm"
  source = "services/nope"
}
