and "both" {
  call   = [and(true, true), and(true, false)]
  result = [true, false]
  type   = tuple([bool, bool])
}
or "either" {
  call   = or(false, "true")
  result = true
}
not "negates" {
  call   = not(false)
  result = true
}
equal "same type needed" {
  call   = [equal(1, 1), equal(1, "1"), equal(null, null), equal([1], [1])]
  result = [true, false, true, true]
  type   = tuple([bool, bool, bool, bool])
}
notequal "different" {
  call   = notequal("a", "b")
  result = true
}
coalesce "first non null" {
  call   = coalesce(null, "a", "b")
  result = "a"
}
coalesce "empty string counts" {
  call   = coalesce("", "b")
  result = ""
}
coalesce "unifies" {
  call   = coalesce(null, 1, "x")
  result = "1"
}
coalesce "all null" {
  call  = coalesce(null, null)
  error = "null"
}
tostring "number" {
  call   = tostring(1.25)
  result = "1.25"
}
tostring "list" {
  call  = tostring([1])
  error = "cannot convert"
}
tonumber "string" {
  call   = tonumber("1e3")
  result = 1000
}
tonumber "bad string" {
  call  = tonumber("one")
  error = "cannot convert"
}
tobool "string" {
  call   = tobool("true")
  result = true
}
tolist "tuple" {
  call   = tolist(["a", 1])
  result = ["a", "1"]
  type   = list(string)
}
toset "dedupes and sorts" {
  call   = toset(["b", "a", "b"])
  result = ["a", "b"]
  type   = set(string)
}
tomap "object" {
  call   = tomap({ a = 1, b = "x" })
  result = { a = "1", b = "x" }
  type   = map(string)
}
byteslen "no bytes values" {
  call  = byteslen("abc")
  error = "must be"
}
bytesslice "no bytes values" {
  call  = bytesslice("abc", 0, 1)
  error = "must be"
}
cidrhost "ipv4" {
  call   = [cidrhost("10.12.112.0/20", 16), cidrhost("10.12.112.0/20", -1)]
  result = ["10.12.112.16", "10.12.127.255"]
  type   = tuple([string, string])
}
cidrhost "ipv6" {
  call   = cidrhost("fd00:fd12:3456:7890::/56", 16)
  result = "fd00:fd12:3456:7800::10"
}
cidrhost "too large" {
  call  = cidrhost("10.0.0.0/30", 4)
  error = "does not accommodate"
}
cidrnetmask "ipv4" {
  call   = cidrnetmask("172.16.0.0/12")
  result = "255.240.0.0"
}
cidrsubnet "ipv4" {
  call   = [cidrsubnet("172.16.0.0/12", 4, 2), cidrsubnet("10.1.2.0/24", 4, 15)]
  result = ["172.18.0.0/16", "10.1.2.240/28"]
  type   = tuple([string, string])
}
cidrsubnet "ipv6" {
  call   = cidrsubnet("fd00:fd12:3456:7890::/56", 16, 162)
  result = "fd00:fd12:3456:7800:a200::/72"
}
cidrsubnet "not enough bits" {
  call  = cidrsubnet("10.0.0.0/30", 3, 0)
  error = "insufficient address space"
}
cidrsubnets "consecutive" {
  call   = cidrsubnets("10.1.0.0/16", 4, 4, 8, 4)
  result = ["10.1.0.0/20", "10.1.16.0/20", "10.1.32.0/24", "10.1.48.0/20"]
  type   = list(string)
}
semvercmp "ranges" {
  call = [
    semvercmp("1.2.3", ">= 1.2.0, < 2.0.0"),
    semvercmp("1.2.3", "^1.1"),
    semvercmp("0.2.5", "^0.3"),
    semvercmp("1.4.0", "~1.3"),
    semvercmp("1.3.9", "~1.3"),
    semvercmp("2.0.0-beta.1", ">= 1.0.0"),
    semvercmp("2.0.0-beta.2", ">= 2.0.0-beta.1"),
    semvercmp("1.5.0", "1.2 - 1.6"),
    semvercmp("3.1.0", "< 2 || 3.x"),
    semvercmp("v1.0.0", "=1.0.0"),
  ]
  result = [true, true, false, false, true, false, true, true, true, true]
  type   = tuple([bool, bool, bool, bool, bool, bool, bool, bool, bool, bool])
}
semvercmp "bad version" {
  call  = semvercmp("not.a.version", ">1")
  error = "invalid semantic version"
}
