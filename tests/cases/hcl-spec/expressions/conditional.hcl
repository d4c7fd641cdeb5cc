# Conditional results unify to one type (spec: Conditional Operator), and an error
# in the arm not taken is not reported.
number_or_string = true ? 1 : "a"
tuple_lengths    = false ? [1] : ["a", "b"]
objects          = true ? { a = 1 } : { a = "x" }
null_arm         = true ? null : 5
unused_error     = false ? undefined_name : "ok"
string_cond      = "false" ? "yes" : "no"
