# An escape sequence the spec does not define.
diagnostics {
  error {
    from {
      line   = 1
      column = 7
      byte   = 6
    }
    to {
      line   = 1
      column = 9
      byte   = 8
    }
  }
}
