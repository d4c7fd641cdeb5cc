result = {
  same_string    = true
  num_vs_string  = false
  bool_vs_str    = false
  one_vs_onezero = true
  tuples         = true
  tuple_vs_list  = false
  objects        = true
  obj_vs_map     = false
  nulls          = true
  null_vs_value  = false
  ne             = true
  lt             = true
  le             = true
  gt_str         = true
  ge             = false
}
