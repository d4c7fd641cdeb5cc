# expect: {dir}/local_cycle.hcl:3:3: locals: reference cycle: local.a -> local.b -> local.a
locals {
  a = "${local.b}-x"
  b = local.a
}

image "base" {
  from = local.a
}
