a = nosuch(1)
