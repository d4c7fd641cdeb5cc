result = {
  left_right  = "helloworld !"
  both        = "abc"
  directive   = "hello"
  values_kept = "hello  world"
  for_strip   = "[ab]"
  newlines    = "xyz"
}
