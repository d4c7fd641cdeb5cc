# expect: {dir}/top_level_attribute.hcl:2:1: unexpected attribute "version" at the top level (attributes belong inside a block; the one top-level attribute is "fleet")
version = 2

image "base" {
  from = "debian:bookworm"
}
