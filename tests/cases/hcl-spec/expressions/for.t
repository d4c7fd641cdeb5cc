result_type = object({
  values    = tuple([string, string])
  indexes   = tuple([number, number])
  to_object = object({ a = number, b = number })
  grouped   = object({ a = tuple([number, number]), b = tuple([number]) })
  filtered  = tuple([string, string])
  map_order = tuple([string, string])
  over_set  = tuple([string, string])
  nested    = tuple([tuple([number, number]), tuple([number, number])])
})
result = {
  values    = ["a", "b"]
  indexes   = [0, 1]
  to_object = { a = 0, b = 1 }
  grouped   = { a = [0, 1], b = [2] }
  filtered  = ["a", "b"]
  map_order = ["a=2", "z=1"]
  over_set  = ["xx", "yy"]
  nested    = [[10, 20], [20, 40]]
}
