# expect: {dir}/group_cycle.hcl:7:3: group "one": reference cycle: group.one -> group.two -> group.one
image "base" {
  from = "debian:bookworm"
}

group "one" {
  targets = [image.base, group.two]
}

group "two" {
  targets = [group.one]
}
