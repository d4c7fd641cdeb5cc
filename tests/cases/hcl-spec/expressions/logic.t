result = {
  and       = false
  or        = true
  not       = true
  from_str  = true
  short_and = false
  short_or  = true
  short_rhs = false
}
