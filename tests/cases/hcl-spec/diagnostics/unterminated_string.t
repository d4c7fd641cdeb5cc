# A quoted string that runs into the end of the line or file.
diagnostics {
  error {
    from {
      line   = 1
      column = 9
      byte   = 8
    }
    to {
      line   = 2
      column = 1
      byte   = 9
    }
  }
}
