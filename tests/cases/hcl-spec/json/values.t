# The JSON syntax (HCL JSON spec: Expressions): strings are templates, numbers keep
# their precision, arrays are tuples and objects are objects.
result_type = object({
  string   = string
  template = number
  joined   = string
  number   = number
  bool     = bool
  null     = any
  array    = tuple([number, string])
  object   = object({ k = string, n = number })
})
result = {
  string   = "plain"
  template = 3
  joined   = "v1"
  number   = 3.14159265358979323846264338327950288419716939937510582097494459
  bool     = true
  null     = null
  array    = [1, "a"]
  object   = { k = "v", n = 2 }
}
