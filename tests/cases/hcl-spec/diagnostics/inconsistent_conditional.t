# Conditional results without a common type.
diagnostics {
  error {
    from {
      line   = 1
      column = 12
      byte   = 11
    }
    to {
      line   = 1
      column = 19
      byte   = 18
    }
  }
}
