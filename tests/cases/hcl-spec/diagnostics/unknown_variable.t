# A reference to an undefined variable is an error where it is written.
diagnostics {
  error {
    from {
      line   = 2
      column = 5
      byte   = 10
    }
    to {
      line   = 2
      column = 9
      byte   = 14
    }
  }
}
