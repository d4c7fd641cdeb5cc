result_type = object({
  service = map(object({ port = number }))
  single  = object({ name = string })
})
result = {
  service = {
    web = { port = 80 }
    api = { port = 8080 }
  }
  single = { name = "one" }
}
