# Index and attribute access (spec: Index Operator, Attribute Access Operator),
# including the legacy ".0" index and key conversion.
tuple_index  = [10, 20, 30][1]
legacy       = [10, 20, 30].2
string_key   = [10, 20]["1"]
object_key   = { a = "x" }["a"]
attr         = { a = { b = "deep" } }.a.b
map_attr     = tomap({ k = "v" }).k
list_index   = tolist(["p", "q"])[0]
