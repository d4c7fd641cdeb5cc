result = "ok"
traversals {
}
