absolute "negative" {
  call   = absolute(-1.5)
  result = 1.5
}
add "strings convert" {
  call   = add("2", 3)
  result = 5
}
subtract "fractions" {
  call   = subtract(1, 0.25)
  result = 0.75
}
multiply "big" {
  call   = multiply(4294967296, 4294967296)
  result = 18446744073709551616
}
divide "tenth" {
  call   = divide(1, 10)
  result = 0.1
}
divide "by zero" {
  # pipeline: go-cty gives an infinity; a division by zero is an error here
  call  = divide(1, 0)
  error = "division by zero"
}
modulo "sign follows the dividend" {
  call   = [modulo(7, 3), modulo(-7, 3), modulo(7, -3)]
  result = [1, -1, 1]
  type   = tuple([number, number, number])
}
modulo "by zero is the dividend" {
  call   = modulo(5, 0)
  result = 5
}
greaterthan "yes" {
  call   = greaterthan(2, 1)
  result = true
}
greaterthanorequalto "equal" {
  call   = greaterthanorequalto(2, 2)
  result = true
}
lessthan "no" {
  call   = lessthan(2, 1)
  result = false
}
lessthanorequalto "yes" {
  call   = lessthanorequalto(1, 1)
  result = true
}
negate "positive" {
  call   = negate(3)
  result = -3
}
min "many" {
  call   = min(3, 1.5, 2)
  result = 1.5
}
min "none" {
  call  = min()
  error = "at least one number"
}
max "expanded" {
  call   = max([1, 9, 4]...)
  result = 9
}
int "truncates toward zero" {
  call   = [int(2.7), int(-2.7)]
  result = [2, -2]
  type   = tuple([number, number])
}
ceil "up" {
  call   = [ceil(1.2), ceil(-1.2), ceil(3)]
  result = [2, -1, 3]
  type   = tuple([number, number, number])
}
floor "down" {
  call   = [floor(1.8), floor(-1.2)]
  result = [1, -2]
  type   = tuple([number, number])
}
log "base 2" {
  call   = log(8, 2)
  result = 3
}
pow "power" {
  call   = pow(2, 10)
  result = 1024
}
pow "fraction" {
  call   = pow(4, 0.5)
  result = 2
}
signum "signs" {
  call   = [signum(-3), signum(0), signum(8)]
  result = [-1, 0, 1]
  type   = tuple([number, number, number])
}
signum "fraction" {
  call  = signum(0.5)
  error = "whole number"
}
parseint "hex" {
  call   = parseint("ff", 16)
  result = 255
}
parseint "negative binary" {
  call   = parseint("-1010", 2)
  result = -10
}
parseint "base 62" {
  call   = parseint("Z", 62)
  result = 61
}
parseint "bad digit" {
  call  = parseint("12", 2)
  error = "cannot be parsed"
}
parseint "not a string" {
  call  = parseint(12, 10)
  error = "must be a string"
}
