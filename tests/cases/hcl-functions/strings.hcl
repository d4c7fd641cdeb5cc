upper "ascii" {
  call   = upper("abc-Def")
  result = "ABC-DEF"
}
upper "unicode one rune mapping" {
  call   = upper("é straße")
  result = "É STRAßE"
}
upper "converts a number" {
  call   = upper(12)
  result = "12"
}
upper "null" {
  call  = upper(null)
  error = "argument 1 must not be null"
}
lower "mixed" {
  call   = lower("HeLLo ÉTÉ")
  result = "hello été"
}
reverse "string" {
  call   = reverse("hello")
  result = "olleh"
}
reverse "keeps grapheme clusters" {
  call   = reverse("ax\u0301b")
  result = "bx\u0301a"
}
reverse "not a list" {
  call  = reverse([1, 2])
  error = "must be a string"
}
strlen "ascii" {
  call   = strlen("hello")
  result = 5
}
strlen "combining mark counts once" {
  call   = strlen("x\u0301")
  result = 1
}
strlen "flag is one character" {
  call   = strlen("🇫🇷🇩🇪")
  result = 2
}
substr "middle" {
  call   = substr("hello world", 1, 4)
  result = "ello"
}
substr "negative offset" {
  call   = substr("hello world", -5, 3)
  result = "wor"
}
substr "to the end" {
  call   = substr("hello", 2, -1)
  result = "llo"
}
substr "past the end" {
  call   = substr("hello", 10, 2)
  result = ""
}
substr "fractional offset" {
  call  = substr("hello", 1.5, 2)
  error = "must be a whole number"
}
join "one list" {
  call   = join("-", ["a", "b", "c"])
  result = "a-b-c"
}
join "several lists" {
  call   = join(", ", ["a"], ["b", "c"])
  result = "a, b, c"
}
join "converts elements" {
  call   = join("", [1, true])
  result = "1true"
}
join "null element" {
  call  = join(",", ["a", null])
  error = "null"
}
sort "strings" {
  call   = sort(["b", "a", "c", "B"])
  result = ["B", "a", "b", "c"]
  type   = list(string)
}
sort "numbers sort as strings" {
  call   = sort([10, 9, 1])
  result = ["1", "10", "9"]
  type   = list(string)
}
split "basic" {
  call   = split(",", "a,b,,c")
  result = ["a", "b", "", "c"]
  type   = list(string)
}
split "empty string" {
  call   = split(",", "")
  result = [""]
  type   = list(string)
}
split "empty separator splits characters" {
  call   = split("", "abc")
  result = ["a", "b", "c"]
  type   = list(string)
}
chomp "newlines" {
  call   = chomp("hello\n\r\n\n")
  result = "hello"
}
chomp "nothing to do" {
  call   = chomp("a\nb")
  result = "a\nb"
}
indent "lines after the first" {
  call   = indent(2, "a\nb\n")
  result = "a\n  b\n  "
}
title "words" {
  call   = title("hello wORLD-and_more x.y")
  result = "Hello WORLD-And_more X.Y"
}
trimspace "unicode spaces" {
  call   = trimspace("\t hello \u00a0\n")
  result = "hello"
}
trim "cutset" {
  call   = trim("?!hello?!", "!?")
  result = "hello"
}
trim "empty cutset" {
  call   = trim("  a  ", "")
  result = "  a  "
}
trimprefix "present" {
  call   = trimprefix("helloworld", "hello")
  result = "world"
}
trimprefix "absent" {
  call   = trimprefix("helloworld", "world")
  result = "helloworld"
}
trimsuffix "present" {
  call   = trimsuffix("helloworld", "world")
  result = "hello"
}
replace "all occurrences" {
  call   = replace("a-b-c", "-", "+")
  result = "a+b+c"
}
replace "empty substring inserts everywhere" {
  call   = replace("ab", "", "-")
  result = "-a-b-"
}
startswith "yes" {
  # pipeline: not in bake's set; kept from pipeline's own specs
  call   = startswith("debian:bookworm", "debian:")
  result = true
}
endswith "no" {
  # pipeline: not in bake's set; kept from pipeline's own specs
  call   = endswith("debian:bookworm", "bullseye")
  result = false
}
sanitize "non target characters" {
  call   = sanitize("my.app/v1:latest")
  result = "my_app_v1_latest"
}
basename "path" {
  call   = basename("/a/b/c.txt")
  result = "c.txt"
}
basename "trailing slash and root" {
  call   = [basename("a/b/"), basename("/"), basename("")]
  result = ["b", "/", "."]
  type   = tuple([string, string, string])
}
dirname "path" {
  call   = dirname("/a/b/c.txt")
  result = "/a/b"
}
dirname "relative and bare" {
  call   = [dirname("a/../b/c"), dirname("file"), dirname("/")]
  result = ["b", ".", "/"]
  type   = tuple([string, string, string])
}
homedir "absolute" {
  call   = startswith(homedir(), "/")
  result = true
}
regex "no groups" {
  call   = regex("[a-z]+", "123abc456")
  result = "abc"
}
regex "unnamed groups" {
  call   = regex("(\\d+)-(\\d+)", "v10-20")
  result = ["10", "20"]
  type   = tuple([string, string])
}
regex "named groups" {
  call   = regex("(?P<major>\\d+)\\.(?P<minor>\\d+)", "go1.22")
  result = { major = "1", minor = "22" }
  type   = object({ major = string, minor = string })
}
regex "optional group unmatched is null" {
  call   = regex("a(b)?", "a")
  result = [null]
  type   = tuple([string])
}
regex "no match" {
  call  = regex("x", "abc")
  error = "did not match"
}
regex "mixed groups" {
  call  = regex("(?P<a>x)(y)", "xy")
  error = "cannot mix"
}
regex "end of text" {
  # RE2: "$" is the end of the text, not before a final newline
  call   = can(regex("a$", "a\n"))
  result = false
}
regexall "every match" {
  call   = regexall("\\d+", "a1b22c333")
  result = ["1", "22", "333"]
  type   = list(string)
}
regexall "empty matches after a match are skipped" {
  call   = regexall("a*", "baaac")
  result = ["", "aaa", ""]
  type   = list(string)
}
regexall "none" {
  call   = regexall("z", "abc")
  result = []
  type   = list(string)
}
regexall "groups" {
  call   = regexall("(\\w)=(\\d)", "a=1 b=2")
  result = [["a", "1"], ["b", "2"]]
  type   = list(tuple([string, string]))
}
regex_replace "groups in the replacement" {
  call   = regex_replace("2024-05-06", "(\\d+)-(\\d+)-(\\d+)", "$3/$2/$1")
  result = "06/05/2024"
}
regex_replace "named and literal dollar" {
  call   = regex_replace("v1.2", "v(?P<v>.*)", "$$ $${v} $v")
  result = "$ 1.2 1.2"
}
regex_replace "posix class" {
  call   = regex_replace("a1b2", "[[:digit:]]", "#")
  result = "a#b#"
}
