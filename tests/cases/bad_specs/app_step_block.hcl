# expect: {dir}/app_step_block.hcl:4:3: app "web": unexpected block "run" (app blocks take attributes only; steps belong in an image block)
app "web" {
  from = "debian:bookworm"
  run {
    command = "true"
  }
}
