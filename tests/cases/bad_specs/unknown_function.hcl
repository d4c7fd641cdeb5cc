# expect: {dir}/unknown_function.hcl:3:10: image "base": unknown function "uper" (did you mean "upper"?)
image "base" {
  from = uper("debian:bookworm")
}
