# Function calls, with "..." expanding the last argument (spec: Functions and
# Function Calls); arguments convert to the parameter types.
plain    = upper("abc")
expanded = max([3, 9, 4]...)
mixed    = concat(["a"], [["b"], ["c"]]...)
convert  = join(",", [1, true, "x"])
newlines = min(
  5,
  2,
)
