# expect: {dir}/unknown_attribute.hcl:4:3: app "api": unknown attribute "srcs" (did you mean "source"?)
app "api" {
  from = "debian:bookworm"
  srcs = "."
}
