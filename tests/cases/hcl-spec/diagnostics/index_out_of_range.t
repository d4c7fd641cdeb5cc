# An index outside a tuple is an error at the key.
diagnostics {
  error {
    from {
      line   = 1
      column = 12
      byte   = 11
    }
    to {
      line   = 1
      column = 13
      byte   = 12
    }
  }
}
