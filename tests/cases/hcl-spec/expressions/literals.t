result_type = object({
  int     = number
  neg     = number
  float   = number
  exp     = number
  exp_neg = number
  big     = number
  t       = bool
  f       = bool
  n       = any
  escapes = string
})
result = {
  int     = 42
  neg     = -7
  float   = 1.5
  exp     = 1500
  exp_neg = 0.25
  big     = 123456789012345678901234567890
  t       = true
  f       = false
  n       = null
  escapes = "tab\tquote\"back\\slash\\nnl\nuni\u00e9astral\U0001F600"
}
