# Arithmetic is done in an arbitrary-precision number space (spec: Arithmetic
# Operators); integers beyond float64 stay exact, operands convert from strings.
add        = 2 + 3.5
sub        = 3.5 - 2
mul        = 2 * 4.5
div        = 1 / 10
mod        = 11 % 5
mod_neg    = -7 % 3
mod_frac   = 11 % 5.1
beyond_f64 = 9007199254740993 + 0
huge       = 340282366920938463463374607431768211456 * 2
from_str   = "2" + 1
precedence = 1 + 2 * 3 - 4 / 2
paren      = (1 + 2) * 3
negate     = -(2 - 5)
third      = 1 / 3
