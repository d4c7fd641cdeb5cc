# expect: {dir}/unknown_copy_from.hcl:4:3: image "base": unknown reference "app.nope/build"
image "base" {
  from = "debian:bookworm"
  copy {
    from = "app.nope/build"
    src  = "/x"
    dest = "/x"
  }
}
