# expect: {dir}/from_cycle.hcl:3:3: image "a": reference cycle: image.a -> image.b -> image.a
image "a" {
  from = image.b
}

image "b" {
  from = image.a
}
