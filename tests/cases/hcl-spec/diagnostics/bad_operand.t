# Arithmetic needs numbers; the wrong operand is located.
diagnostics {
  error {
    from {
      line   = 1
      column = 9
      byte   = 8
    }
    to {
      line   = 1
      column = 13
      byte   = 12
    }
  }
}
