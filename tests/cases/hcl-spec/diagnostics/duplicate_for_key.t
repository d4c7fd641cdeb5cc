# An object for expression may not produce a key twice without "...".
diagnostics {
  error {
    from {
      line   = 1
      column = 25
      byte   = 24
    }
    to {
      line   = 1
      column = 26
      byte   = 25
    }
  }
}
