# The variables an input refers to, for-expression names excluded.
result = {
  a = 1
  b = [2]
  c = "q"
}
traversals {
  expect {
    ref = foo.bar
  }
  expect {
    ref = baz
  }
  expect {
    ref = qux[0]
  }
}
