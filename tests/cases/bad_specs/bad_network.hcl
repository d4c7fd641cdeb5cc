# expect: {dir}/bad_network.hcl:6:5: image "base": run: attribute "network": expected "default" or "none", found "host"
image "base" {
  from = "debian:bookworm"
  run {
    command = "true"
    network = "host"
  }
}
