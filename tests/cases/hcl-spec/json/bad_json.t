# A JSON syntax error is reported where the bad token starts.
diagnostics {
  error {
    from {
      line   = 3
      column = 8
      byte   = 19
    }
    to {
      line   = 3
      column = 9
      byte   = 21
    }
  }
}
