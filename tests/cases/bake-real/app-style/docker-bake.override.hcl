target "worker" {
  args = {
    CONCURRENCY = 4
  }
}
