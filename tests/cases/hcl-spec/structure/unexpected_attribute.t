# An attribute the decoding spec does not name is an error at its name.
diagnostics {
  error {
    from {
      line   = 2
      column = 1
      byte   = 14
    }
    to {
      line   = 2
      column = 2
      byte   = 15
    }
  }
}
