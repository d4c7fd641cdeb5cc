result_type = object({
  tuple     = tuple([number, string, bool, any])
  trailing  = tuple([string, string])
  object    = object({ a = number, b = number, c = number })
  key_expr  = object({ k1 = string })
  nested    = object({ list = tuple([object({ x = number })]) })
  later_key = object({ a = number })
  empty_t   = tuple([])
  empty_o   = object({})
})
result = {
  tuple     = [1, "two", true, null]
  trailing  = ["a", "b"]
  object    = { a = 2, b = 1, c = 3 }
  key_expr  = { k1 = "v" }
  nested    = { list = [{ x = 1 }] }
  later_key = { a = 2 }
  empty_t   = []
  empty_o   = {}
}
