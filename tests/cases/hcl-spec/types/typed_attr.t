# A decoding spec's attribute types convert the values (unsafe conversions allowed).
result_type = object({
  count = number
  names = list(string)
})
result = {
  count = 3
  names = ["a", "1"]
}
