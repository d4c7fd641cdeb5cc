result = {
  tuple_index = 20
  legacy      = 30
  string_key  = 20
  object_key  = "x"
  attr        = "deep"
  map_attr    = "v"
  list_index  = "p"
}
