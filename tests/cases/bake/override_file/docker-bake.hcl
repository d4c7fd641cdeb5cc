target "webapp" {
  context = "."
  tags = ["bar"]
  labels = {
    "com.example.foo" = "foo"
    "com.example.name" = "Alice"
  }
}
