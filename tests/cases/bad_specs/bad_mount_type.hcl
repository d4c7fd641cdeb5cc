# expect: {dir}/bad_mount_type.hcl:7:7: image "base": run: mount: attribute "type": expected "cache" or "secret", found "cahce" (did you mean "cache"?)
image "base" {
  from = "debian:bookworm"
  run {
    command = "true"
    mount {
      type   = "cahce"
      target = "/root/.cache"
    }
  }
}
