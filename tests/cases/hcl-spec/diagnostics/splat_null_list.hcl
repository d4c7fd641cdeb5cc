a = tolist(null)[*]
