result_type = object({
  unwrapped_number = number
  unwrapped_tuple  = tuple([number, number])
  joined           = string
  escaped          = string
  dollar_alone     = string
  nested           = string
})
result = {
  unwrapped_number = 2
  unwrapped_tuple  = [1, 2]
  joined           = "a1btruec1.5"
  escaped          = "$${not} %%{not}"
  dollar_alone     = "cost: $5 and 100%"
  nested           = "xyz"
}
