result_type = object({
  number_or_string = string
  tuple_lengths    = list(string)
  objects          = object({ a = string })
  null_arm         = number
  unused_error     = string
  string_cond      = string
})
result = {
  number_or_string = "1"
  tuple_lengths    = ["a", "b"]
  objects          = { a = "1" }
  null_arm         = null
  unused_error     = "ok"
  string_cond      = "no"
}
