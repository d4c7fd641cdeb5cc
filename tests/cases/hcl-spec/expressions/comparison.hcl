# Equality needs identical types (spec: Comparison Operators); null equals null.
same_string   = "a" == "a"
num_vs_string = 1 == "1"
bool_vs_str   = "true" == true
one_vs_onezero = 1 == 1.0
tuples        = [1, 2] == [1, 2]
tuple_vs_list = [1] == tolist([1])
objects       = { a = 1 } == { a = 1 }
obj_vs_map    = { a = 1 } == tomap({ a = 1 })
nulls         = null == null
null_vs_value = null == 1
ne            = "a" != "b"
lt            = 1 < 2
le            = 2 <= 2
gt_str        = "10" > 9
ge            = 1 >= 2
