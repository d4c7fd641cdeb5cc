a = { for x in [1, 1] : x => x }
