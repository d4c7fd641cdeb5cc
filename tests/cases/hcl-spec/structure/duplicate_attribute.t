# An attribute defined twice in one body is an error at the second definition.
diagnostics {
  error {
    from {
      line   = 2
      column = 1
      byte   = 6
    }
    to {
      line   = 2
      column = 2
      byte   = 7
    }
  }
}
