# A tuple cannot be converted to a string in a template.
diagnostics {
  error {
    from {
      line   = 1
      column = 10
      byte   = 9
    }
    to {
      line   = 1
      column = 13
      byte   = 12
    }
  }
}
