# expect: {dir}/unknown_image_reference.hcl:7:10: app "web": unknown reference "image.pyton" (did you mean "image.python"?)
image "python" {
  from = "debian:bookworm"
}

app "web" {
  from = image.pyton
}
