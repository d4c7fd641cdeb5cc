# expect: {dir}/bad_chmod.hcl:7:5: image "base": copy: attribute "chmod": expected an octal mode like "0644", found "rwx"
image "base" {
  from = "debian:bookworm"
  copy {
    src   = "x"
    dest  = "/x"
    chmod = "rwx"
  }
}
