# Conversions of the information model: convert() with a type expression, and the
# to* functions.
to_list       = convert([1, "a"], list(string))
to_set        = convert(["b", "a", "b"], set(string))
to_map        = convert({ a = 1, b = 2 }, map(number))
to_object_opt = convert({ a = "x" }, object({ a = string, b = optional(number) }))
extra_dropped = convert({ a = 1, z = 2 }, object({ a = number }))
str_to_num    = convert("12.5", number)
str_to_bool   = convert("1", bool)
num_to_str    = tostring(0.5)
tuple_to_list = tolist([1, 2])
unify_list    = tolist([1, "x"])
