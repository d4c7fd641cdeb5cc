# Logic operators; a controlling operand decides even when the other side fails.
and     = true && false
or      = false || true
not     = !false
from_str = "true" && true
short_and = false && undefined_name
short_or  = true || undefined_name
short_rhs = undefined_name && false
