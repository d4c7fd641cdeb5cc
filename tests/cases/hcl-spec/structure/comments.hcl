# hash comment
a = 1 // slash comment
/* block
   comment */ b = 2
c = /* inline */ 3
