# expect: {dir}/block_ref_in_string.hcl:7:28: app "web": cannot use the block reference image.python inside a string; write image.python on its own
image "python" {
  from = "debian:bookworm"
}

app "web" {
  from = "registry.local/${image.python}"
}
