# An object has only the attributes it was built with.
diagnostics {
  error {
    from {
      line   = 1
      column = 14
      byte   = 13
    }
    to {
      line   = 1
      column = 16
      byte   = 15
    }
  }
}
