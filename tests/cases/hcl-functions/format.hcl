format "strings and values" {
  call   = format("%s-%v-%v-%v", "a", 1.5, true, ["x", 1])
  result = "a-1.5-true-[\"x\",1]"
}
format "v of a large number uses g" {
  call   = format("%v %v", 1000000, 123456)
  result = "1e+06 123456"
}
format "sharp v is json" {
  call   = format("%#v %#v", "s", 1)
  result = "\"s\" 1"
}
format "integers" {
  call   = format("%d|%5d|%-5d|%05d|%+d|%x|%X|%o|%b|%#x", 42, 42, 42, 42, 42, 255, 255, 8, 5, 255)
  result = "42|   42|42   |00042|+42|ff|FF|10|101|0xff"
}
format "integer precision" {
  call   = format("%.3d|%8.3d", 7, -7)
  result = "007|    -007"
}
format "floats" {
  call   = format("%f|%.2f|%8.3f|%-8.1f|%+.1f|%.0f|%.0f", 3.14159, 3.14159, 3.14159, 2.5, 2.5, 2.5, 3.5)
  result = "3.141590|3.14|   3.142|2.5     |+2.5|2|4"
}
format "exponent and g" {
  call   = format("%e|%.2E|%g|%g|%.3g|%G", 123456.789, 0.000123, 0.0001, 0.00001, 3.14159, 1e-7)
  result = "1.234568e+05|1.23E-04|0.0001|1e-05|3.14|1E-07"
}
format "string width and precision" {
  call   = format("[%5s][%-5s][%.2s][%q]", "ab", "ab", "héllo", "a\"b")
  result = "[   ab][ab   ][hé][\"a\\\"b\"]"
}
format "explicit argument index" {
  call   = format("%[2]s %[1]s %s", "a", "b")
  result = "b a b"
}
format "percent" {
  call   = format("100%%")
  result = "100%"
}
format "t" {
  call   = format("%t %t", true, "false")
  result = "true false"
}
format "integer needs a whole number" {
  call  = format("%d", 1.5)
  error = "whole number"
}
format "too many arguments" {
  call  = format("%s", "a", "b")
  error = "too many arguments"
}
format "not enough arguments" {
  call  = format("%s %s", "a")
  error = "not enough arguments"
}
format "null" {
  call  = format("%s", null)
  error = "null"
}
format "null with v" {
  call   = format("%v", null)
  result = "null"
}
formatlist "pairs" {
  call   = formatlist("%s=%d", ["a", "b"], [1, 2])
  result = ["a=1", "b=2"]
  type   = list(string)
}
formatlist "scalar repeats" {
  call   = formatlist("%s.%s", ["x", "y"], "z")
  result = ["x.z", "y.z"]
  type   = list(string)
}
formatlist "no lists" {
  call   = formatlist("%s", "one")
  result = ["one"]
  type   = list(string)
}
formatlist "lengths differ" {
  call  = formatlist("%s%s", ["a"], ["b", "c"])
  error = "inconsistent"
}
