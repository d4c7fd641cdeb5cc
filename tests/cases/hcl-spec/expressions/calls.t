result_type = object({
  plain    = string
  expanded = number
  mixed    = tuple([string, string, string])
  convert  = string
  newlines = number
})
result = {
  plain    = "ABC"
  expanded = 9
  mixed    = ["a", "b", "c"]
  convert  = "1,true,x"
  newlines = 2
}
