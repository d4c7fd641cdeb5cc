# Template interpolation and unwrapping (spec: Template Interpolation Unwrapping):
# a template that is one interpolation is its value, with its type.
unwrapped_number = "${1 + 1}"
unwrapped_tuple  = "${[1, 2]}"
joined           = "a${1}b${true}c${1.5}"
escaped          = "$${not} %%{not}"
dollar_alone     = "cost: $5 and 100%"
nested           = "x${"y${"z"}"}"
