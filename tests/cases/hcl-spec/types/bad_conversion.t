# A value that does not convert to the attribute's type is an error at the value.
diagnostics {
  error {
    from {
      line   = 1
      column = 9
      byte   = 8
    }
    to {
      line   = 1
      column = 16
      byte   = 15
    }
  }
}
