# A null list cannot be splatted (only a null non-list becomes an empty tuple).
diagnostics {
  error {
    from {
      line   = 1
      column = 5
      byte   = 4
    }
    to {
      line   = 1
      column = 17
      byte   = 16
    }
  }
}
