# expect: {dir}/unknown_block_type.hcl:2:1: unknown block type "imgae" (did you mean "image"?)
imgae "base" {
  from = "debian:bookworm"
}
