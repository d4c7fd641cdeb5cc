# expect: {dir}/missing_copy_context.hcl:7:5: image "x": copy: context directory not found: {dir}/nope
image "x" {
  from = "scratch"
  copy {
    src     = "."
    dest    = "/app/"
    context = "nope"
  }
}
