# For expressions (spec: For Expressions): tuples and objects, key/value over maps
# in lexical order, sets give the element as both, conditions and grouping.
values     = [for v in ["a", "b"] : v]
indexes    = [for i, v in ["a", "b"] : i]
to_object  = { for i, v in ["a", "b"] : v => i }
grouped    = { for i, v in ["a", "a", "b"] : v => i... }
filtered   = [for i, v in ["a", "b", "c"] : v if i < 2]
map_order  = [for k, v in { z = 1, a = 2 } : "${k}=${v}"]
over_set   = [for k, v in toset(["y", "x"]) : "${k}${v}"]
nested     = [for x in [1, 2] : [for y in [10, 20] : x * y]]
