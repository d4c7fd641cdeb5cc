# expect: {dir}/wrong_type_item.hcl:4:3: image "base": attribute "tags": expected a list of strings, found a list with a list at index 1
image "base" {
  from = "debian:bookworm"
  tags = ["a", ["b"]]
}
