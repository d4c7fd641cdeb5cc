# Literal values: numbers, bools, null, quoted strings and their escapes.
int      = 42
neg      = -7
float    = 1.5
exp      = 1.5e3
exp_neg  = 25e-2
big      = 123456789012345678901234567890
t        = true
f        = false
n        = null
escapes  = "tab\tquote\"back\\slash\\nnl\nuni\u00e9astral\U0001F600"
