jsonencode "object keys sorted" {
  call   = jsonencode({ b = [1, true, null], a = "x" })
  result = "{\"a\":\"x\",\"b\":[1,true,null]}"
}
jsonencode "html characters escaped as Go does" {
  call   = jsonencode("<a & b>")
  result = "\"\\u003ca \\u0026 b\\u003e\""
}
jsonencode "numbers" {
  call   = jsonencode([0.1, 1e21, -2])
  result = "[0.1,1000000000000000000000,-2]"
}
jsonencode "null" {
  call   = jsonencode(null)
  result = "null"
}
jsondecode "object" {
  call   = jsondecode("{\"b\": [1, \"x\"], \"a\": null}")
  result = { a = null, b = [1, "x"] }
  type   = object({ a = any, b = tuple([number, string]) })
}
jsondecode "precise number" {
  call   = jsondecode("123456789012345678901234567890.5")
  result = 123456789012345678901234567890.5
}
jsondecode "invalid" {
  call  = jsondecode("{")
  error = "not valid JSON"
}
jsondecode "duplicate key" {
  call  = jsondecode("{\"a\": 1, \"a\": 2}")
  error = "duplicate"
}
csvdecode "rows" {
  call   = csvdecode("name,port\nweb,80\n\"a, b\",81\n")
  result = [{ name = "web", port = "80" }, { name = "a, b", port = "81" }]
  type   = list(object({ name = string, port = string }))
}
csvdecode "wrong field count" {
  call  = csvdecode("a,b\n1\n")
  error = "wrong number of fields"
}
base64encode "text" {
  call   = base64encode("héllo")
  result = "aMOpbGxv"
}
base64decode "text" {
  call   = base64decode("aGVsbG8=")
  result = "hello"
}
base64decode "invalid" {
  call  = base64decode("a")
  error = "not valid base64"
}
urlencode "query escaping" {
  call   = urlencode("a b&c=d/é~")
  result = "a+b%26c%3Dd%2F%C3%A9~"
}
md5 "empty" {
  call   = md5("")
  result = "d41d8cd98f00b204e9800998ecf8427e"
}
sha1 "abc" {
  call   = sha1("abc")
  result = "a9993e364706816aba3e25717850c26c9cd0d89d"
}
sha256 "abc" {
  call   = sha256("abc")
  result = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
}
sha512 "abc" {
  call   = substr(sha512("abc"), 0, 16)
  result = "ddaf35a193617aba"
}
bcrypt "format" {
  call   = can(regex("^\\$2a\\$10\\$[./A-Za-z0-9]{53}$", bcrypt("secret")))
  result = true
}
bcrypt "cost" {
  call   = substr(bcrypt("secret", 4), 0, 7)
  result = "$2a$04$"
}
bcrypt "cost out of range" {
  call  = bcrypt("secret", 3)
  error = "between 4 and 31"
}
rsadecrypt "bad key" {
  call  = rsadecrypt("aGVsbG8=", "not a key")
  error = "not a usable private key"
}
rsadecrypt "bad ciphertext" {
  call  = rsadecrypt("%%%", "-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----")
  error = "not valid base64"
}
uuidv4 "format" {
  call   = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", uuidv4()))
  result = true
}
uuidv5 "dns" {
  call   = uuidv5("dns", "www.example.com")
  result = "2ed6657d-e927-568b-95e1-2665a8aea6a2"
}
uuidv5 "custom namespace" {
  call   = uuidv5("6ba7b811-9dad-11d1-80b4-00c04fd430c8", "https://www.example.com/")
  result = uuidv5("url", "https://www.example.com/")
}
uuidv5 "bad namespace" {
  call  = uuidv5("nope", "x")
  error = "not a namespace"
}
