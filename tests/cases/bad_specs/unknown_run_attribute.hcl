# expect: {dir}/unknown_run_attribute.hcl:5:5: image "base": run: unknown attribute "commands" (did you mean "command"?)
image "base" {
  from = "debian:bookworm"
  run {
    commands = "true"
  }
}
