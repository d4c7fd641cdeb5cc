result = {
  plain  = "one\n  two\n"
  flush  = "one\n  two\n"
  interp = "Hello YOU!\n"
  quotes = "\"quoted\" and \\n stays\n"
  empty  = ""
}
