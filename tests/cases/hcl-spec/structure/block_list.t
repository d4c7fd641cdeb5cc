result_type = list(object({ run = string }))
result = [
  { run = "a" },
  { run = "b" },
]
