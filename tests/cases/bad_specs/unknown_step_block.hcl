# expect: {dir}/unknown_step_block.hcl:4:3: image "base": unknown block type "rnu" (did you mean "run"?)
image "base" {
  from = "debian:bookworm"
  rnu {
    command = "true"
  }
}
