# Splat operators (spec: Splat Operators): a tuple gives a tuple, a list or set a
# list; a non-sequence becomes a one-element tuple and null an empty one; in the
# attribute-only form an index applies to the whole result.
tuple_attr   = [{ a = 1 }, { a = 2 }][*].a
list_attr    = tolist([{ a = 1 }, { a = 2 }])[*].a
attr_only    = [{ a = 1 }, { a = 2 }].*.a
single       = { a = "one" }.*.a
null_value   = null[*]
full_index   = [{ a = [1, 2] }, { a = [3, 4] }][*].a[0]
attr_index   = [{ a = [1, 2] }, { a = [3, 4] }].*.a[0]
bare         = [1, 2][*]
from_set     = toset(["b", "a"])[*]
empty_list   = tolist([])[*].a
