result_type = object({
  tuple_attr = tuple([number, number])
  list_attr  = list(number)
  attr_only  = tuple([number, number])
  single     = tuple([string])
  null_value = tuple([])
  full_index = tuple([number, number])
  attr_index = tuple([number, number])
  bare       = tuple([number, number])
  from_set   = list(string)
  empty_list = list(any)
})
result = {
  tuple_attr = [1, 2]
  list_attr  = [1, 2]
  attr_only  = [1, 2]
  single     = ["one"]
  null_value = []
  full_index = [1, 3]
  attr_index = [1, 2]
  bare       = [1, 2]
  from_set   = ["a", "b"]
  empty_list = []
}
