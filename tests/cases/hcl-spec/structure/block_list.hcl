step {
  run = "a"
}
step {
  run = "b"
}
