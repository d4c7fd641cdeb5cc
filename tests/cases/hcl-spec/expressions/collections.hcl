# Tuple and object constructors; identifiers as keys are literal names, a
# parenthesized key is an expression; ":" works like "=" (spec: Collection Values).
tuple     = [1, "two", true, null]
trailing  = [
  "a",
  "b",
]
object    = { b = 1, "a" = 2, c: 3 }
key_expr  = { ("k${1}") = "v" }
nested    = { list = [{ x = 1 }] }
later_key = { a = 1, a = 2 }
empty_t   = []
empty_o   = {}
