target "webapp" {
  tags = ["foo"]
  labels = {
    "com.example.bar" = "bar"
    "com.example.name" = "Bob"
  }
}
