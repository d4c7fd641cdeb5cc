count = "3"
names = ["a", 1]
