# expect: {dir}/from_cycle_through_copy.hcl:12:3: app "b": reference cycle: app.b -> image.a -> app.b
image "a" {
  from = "debian:bookworm"
  copy {
    from = app.b
    src  = "/x"
    dest = "/x"
  }
}

app "b" {
  from = image.a
}
