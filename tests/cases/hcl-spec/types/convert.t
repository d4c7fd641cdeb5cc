result_type = object({
  to_list       = list(string)
  to_set        = set(string)
  to_map        = map(number)
  to_object_opt = object({ a = string, b = number })
  extra_dropped = object({ a = number })
  str_to_num    = number
  str_to_bool   = bool
  num_to_str    = string
  tuple_to_list = list(number)
  unify_list    = list(string)
})
result = {
  to_list       = ["1", "a"]
  to_set        = ["a", "b"]
  to_map        = { a = 1, b = 2 }
  to_object_opt = { a = "x", b = null }
  extra_dropped = { a = 1 }
  str_to_num    = 12.5
  str_to_bool   = true
  num_to_str    = "0.5"
  tuple_to_list = [1, 2]
  unify_list    = ["1", "x"]
}
