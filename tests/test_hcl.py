"""The HCL front end: parsing to located blocks, and expression evaluation (table-driven)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import Location, SpecError
from pipeline.hcl.evaluator import evaluate
from pipeline.hcl.files import parse, parse_expression, parse_file
from pipeline.hcl.functions import FUNCTIONS
from pipeline.hcl.values import Attribute, Block, BlockRef, Namespace, Value

SCOPE = {
    "var": Namespace.of(
        "var",
        {
            "NAME": "web",
            "N": 3,
            "PI": 3.5,
            "ON": True,
            "LIST": ("a", "b"),
            "NESTED": (("a", "b"), ("c",)),
            "MAP": {"k": "v", "x": "y"},
            "EMPTY": "",
            "NULL": None,
        },
    ),
    "image": Namespace.blocks("image", ["python", "base"]),
    "app": Namespace.blocks("app", ["web"]),
}


def ev(text: str) -> Value:
    return evaluate(parse_expression(text, "e.hcl"), SCOPE)


CASES: list[tuple[str, Value]] = [
    # literals
    ("1", 1),
    ("-1", -1),
    ("1.5", 1.5),
    ("1.5e3", 1500),
    ("true", True),
    ("false", False),
    ("null", None),
    # strings: escapes, interpolation of strings, numbers and bools
    ('"a\\tb\\n\\"c\\" \\\\ \\u00e9"', 'a\tb\n"c" \\ é'),
    ('"hello ${var.NAME}!"', "hello web!"),
    ('"n=${var.N} pi=${var.PI} on=${var.ON}"', "n=3 pi=3.5 on=true"),
    ('"${1 + 1}-${2 * 0.5}"', "2-1"),
    ('"$${literal} %%{literal}"', "${literal} %{literal}"),
    ('"${var.LIST}"', ("a", "b")),  # a lone interpolation keeps the value's type
    ('"${var.N}"', 3),
    ('""', ""),
    # template directives
    ('"%{ if var.ON }yes%{ else }no%{ endif }"', "yes"),
    ('"%{ if !var.ON }yes%{ endif }"', ""),
    ('"[%{ for x in var.LIST }${x};%{ endfor }]"', "[a;b;]"),
    ('"%{ for i, x in var.LIST }${i}=${x} %{ endfor }"', "0=a 1=b "),
    ('"a %{~ if true ~} b %{~ endif ~} c"', "abc"),
    # heredocs
    ('<<EOT\nhello ${var.NAME}\n"quoted" \\n stays\nEOT\n', 'hello web\n"quoted" \\n stays\n'),
    ('<<-EOT\n    one\n      two ${upper("x}")}\n    EOT\n', "one\n  two X}\n"),
    ("<<EOT\nEOT\n", ""),
    ("<<EOT\n$${not} ${var.N}\nEOT\n", "${not} 3\n"),
    # collections, attribute access, indexing, splats
    ("[1, 2, 3]", (1, 2, 3)),
    ("[]", ()),
    ('{ b = 1, "a" = 2 }', {"a": 2, "b": 1}),
    ("{ (var.NAME) = 1 }", {"web": 1}),
    ("{ a: 1 }", {"a": 1}),
    ("var.LIST[1]", "b"),
    ("var.LIST.0", "a"),
    ('var.MAP["k"]', "v"),
    ("var.MAP.x", "y"),
    ('var["NAME"]', "web"),
    ("{ a = { b = [10, 20] } }.a.b[1]", 20),
    ("[{ a = 1 }, { a = 2 }][*].a", (1, 2)),
    ("[{ a = 1 }, { a = 2 }].*.a", (1, 2)),
    ("var.NULL[*]", ()),
    ("var.NAME[*]", ("web",)),
    # operators
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("10 - 2 - 3", 5),
    ("5 / 2", 2.5),
    ("4 / 2", 2),
    ("7 % 3", 1),
    ("-7 % 3", -1),
    ('"2" + 1', 3),
    ("1 < 2", True),
    ("2 <= 2", True),
    ("3 > 4", False),
    ("3 >= 4", False),
    ("1 == 1.0", True),
    ('1 == "1"', False),
    ('"a" != "b"', True),
    ("[1, 2] == [1, 2]", True),
    ("{ a = 1 } == { a = 1 }", True),
    ("true && false", False),
    ("true || false", True),
    ("false && nope", False),  # short circuit: the right side is not evaluated
    ("!true", False),
    ("-var.N", -3),
    ("true == 1", False),
    # conditional
    ("var.ON ? 1 : 2", 1),
    ('var.N > 5 ? "big" : "small"', "small"),
    ("false ? nope : 2", 2),
    # for expressions
    ("[for x in [1, 2, 3] : x * 2]", (2, 4, 6)),
    ("[for x in [1, 2, 3] : x if x > 1]", (2, 3)),
    ('[for i, x in var.LIST : "${i}${x}"]', ("0a", "1b")),
    ('[for k, v in var.MAP : "${k}=${v}"]', ("k=v", "x=y")),
    ("[for v in var.MAP : v]", ("v", "y")),
    ("{for x in var.LIST : x => upper(x)}", {"a": "A", "b": "B"}),
    ('{for k, v in var.MAP : v => k if k != "x"}', {"v": "k"}),
    ('{for x in ["a", "b", "a"] : x => 1...}', {"a": (1, 1), "b": (1,)}),
    # block references
    ("image.python", BlockRef("image", "python")),
    ('"${app.web}"', BlockRef("app", "web")),
    ("[image.python, image.base]", (BlockRef("image", "python"), BlockRef("image", "base"))),
]

FUNCTION_CASES: list[tuple[str, Value]] = [
    ('lower("AbC")', "abc"),
    ('upper("AbC")', "ABC"),
    ('title("hello wORLD")', "Hello WORLD"),
    ('join(", ", ["a", "b"])', "a, b"),
    ('join("-", ["a"], ["b", "c"])', "a-b-c"),
    ('join("-", [])', ""),
    ('split(",", "a,b,,c")', ("a", "b", "", "c")),
    ('format("%s-%d", "web", 3)', "web-3"),
    ('format("%v %v %v", "s", 1.5, true)', "s 1.5 true"),
    ('format("%v", ["a", 1])', '["a",1]'),
    ('format("%q", "say \\"hi\\"")', '"say \\"hi\\""'),
    ('format("100%% %t %.2f", false, 2)', "100% false 2.00"),
    ('formatlist("%s=%s", ["a", "b"], "x")', ("a=x", "b=x")),
    ('formatlist("%s-%s", ["a", "b"], ["1", "2"])', ("a-1", "b-2")),
    ('concat(["a"], [], ["b", "c"])', ("a", "b", "c")),
    ("concat(var.NESTED...)", ("a", "b", "c")),
    ('distinct(["b", "a", "b", "c", "a"])', ("b", "a", "c")),
    ('sort(["b", "a", "c"])', ("a", "b", "c")),
    ("reverselist([1, 2, 3])", (3, 2, 1)),
    ('reverse("abc")', "cba"),  # bake's reverse is go-cty's: it reverses a string
    ("merge({ a = 1, b = 2 }, { b = 3 }, null)", {"a": 1, "b": 3}),
    ('coalesce(null, "", "x", "y")', ""),  # go-cty: the first non-null, even ""
    ('replace("a-b-c", "-", "_")', "a_b_c"),
    ('trimprefix("foobar", "foo")', "bar"),
    ('trimprefix("foobar", "bar")', "foobar"),
    ('trimsuffix("foobar", "bar")', "foo"),
    ('trimspace("  x y \\n")', "x y"),
    ("length([1, 2, 3])", 3),
    ('length("abc")', 3),
    ("length({ a = 1 })", 1),
    ('contains(["a", "b"], "b")', True),
    ('contains(["a", "b"], "c")', False),
    ("keys({ b = 1, a = 2 })", ("a", "b")),
    ("values({ b = 1, a = 2 })", (2, 1)),
    ('lookup({ a = "x" }, "a")', "x"),
    ('lookup({ a = "x" }, "b", "d")', "d"),
    ("flatten([[1, [2]], [], 3])", (1, 2, 3)),
    ("range(3)", (0, 1, 2)),
    ("range(1, 4)", (1, 2, 3)),
    ("range(10, 0, -4)", (10, 6, 2)),
    ("range(3, 1)", (3, 2)),
    ('element(["a", "b", "c"], 4)', "b"),
    ('substr("hello", 1, 3)', "ell"),
    ('substr("hello", -3, -1)', "llo"),
    ("tostring(5)", "5"),
    ("tostring(true)", "true"),
    ("tostring(null)", None),
    ('tonumber("42")', 42),
    ('tonumber("1.5")', 1.5),
    ('startswith("debian:bookworm", "debian:")', True),
    ('endswith("debian:bookworm", "worm")', True),
    ('endswith("x", "y")', False),
    ("min(3, 1, 2)", 1),
    ("max(3, 1, 2)", 3),
    ('jsonencode({ b = [1, true], a = "x" })', '{"a":"x","b":[1,true]}'),
]


def strict(value: object) -> object:
    """``value`` with each scalar tagged by its type, so True != 1 and 2 != 2.0."""
    if isinstance(value, tuple):
        return ("list", tuple(strict(v) for v in value))
    if isinstance(value, dict):
        return ("object", {k: strict(v) for k, v in value.items()}, tuple(value))
    return (type(value).__name__, value)


@pytest.mark.parametrize(("text", "expected"), CASES + FUNCTION_CASES)
def test_expression_values(text: str, expected: Value) -> None:
    assert strict(ev(text)) == strict(expected)


def test_every_function_has_a_case() -> None:
    from tests.test_hcl_spec import FUNCTION_CASES as TABLES  # tests/cases/hcl-functions

    tested = {text.split("(", 1)[0] for text, _ in FUNCTION_CASES}
    tested |= {case.type for _, case in TABLES}
    assert set(FUNCTIONS) <= tested


def test_block_reference_carries_where_it_was_written() -> None:
    ref = ev('"x" == "x" ? image.python : null')
    assert isinstance(ref, BlockRef)
    assert ref.id == "image.python"
    assert ref.loc == Location("e.hcl", 1, 14)


ERRORS: list[tuple[str, str]] = [
    ("var.nope", 'e.hcl:1:1: unknown reference "var.nope"'),
    ("var.NAM", 'e.hcl:1:1: unknown reference "var.NAM" (did you mean "var.NAME"?)'),
    ("image.pyton", 'e.hcl:1:1: unknown reference "image.pyton" (did you mean "image.python"?)'),
    ("imag.python", 'e.hcl:1:1: unknown reference "imag" (did you mean "image"?)'),
    ("var", 'e.hcl:1:1: "var" is not a value on its own; write var.NAME'),
    ("uper(var.NAME)", 'e.hcl:1:1: unknown function "uper" (did you mean "upper"?)'),
    ("[1, 2][2]", "e.hcl:1:8: index 2 is out of range for a list of 2 items"),
    ("var.MAP.z", 'e.hcl:1:8: object has no attribute "z"'),  # at the ".", as HCL
    ("1 + true", 'e.hcl:1:5: the right operand of "+" must be a number, found a bool'),
    ('"a" * 2', 'e.hcl:1:1: the left operand of "*" must be a number, found the string "a"'),
    ("1 / 0", "e.hcl:1:5: division by zero"),
    ('"x" ? 1 : 2', "e.hcl:1:1: the condition must be a bool, found a string"),
    ('"a${var.LIST}b"', "e.hcl:1:5: cannot interpolate a list into a string"),
    ('"a${var.NULL}b"', "e.hcl:1:5: cannot interpolate null into a string"),
    (
        '"debian:${image.python}"',
        "e.hcl:1:11: cannot use the block reference image.python inside a string; "
        "write image.python on its own",
    ),
    ("join(1)", "e.hcl:1:1: join(): expected at least 2 arguments, got 1"),
    ('upper("a", "b")', "e.hcl:1:1: upper(): expected 1 argument, got 2"),
    ('join(",", "a")', "e.hcl:1:1: join(): argument 2 must be a list, found a string"),
    ('lookup({}, "k")', 'e.hcl:1:1: lookup(): no key "k" and no default given'),
    (
        'format("%y", 1)',
        "e.hcl:1:1: format(): unsupported verb %y "
        "(use %v %t %b %d %o %x %X %e %E %f %g %G %s %q or %%)",
    ),
    ('format("%s %s", "a")', 'e.hcl:1:1: format(): not enough arguments for the format "%s %s"'),
    ('format("%d", "a")', "e.hcl:1:1: format(): argument 2 must be a whole number, found a string"),
    ('tonumber("x")', 'e.hcl:1:1: tonumber(): cannot convert "x" to a number'),
    ("coalesce(null)", "e.hcl:1:1: coalesce(): all arguments are null or empty"),
    ("element([], 0)", "e.hcl:1:1: element(): the list is empty"),
    ("concat(1...)", 'e.hcl:1:8: "..." needs a list, found a number'),
    (
        "{for x in [1, 1] : x => x}",
        'e.hcl:1:20: duplicate key "1" in a for expression (add "..." to group values)',
    ),
    ("[for x in 5 : x]", "e.hcl:1:11: cannot iterate over a number"),
    ('"\\q"', "e.hcl:1:2: invalid escape sequence \\q"),
    ("<<EOT\nfine\n  ${var.nope}\nEOT\n", 'e.hcl:3:5: unknown reference "var.nope"'),
    ('<<EOT\nx "q\\" ${var.nope}\nEOT\n', 'e.hcl:2:10: unknown reference "var.nope"'),
    ("<<-EOT\n    a ${var.nope}\n    EOT\n", 'e.hcl:2:9: unknown reference "var.nope"'),
    ("1 +", "e.hcl:1:4: syntax error: unexpected end of file, expected an expression"),
    ('"%{ if true }x"', "e.hcl:1:2: %{if} without a matching %{endif}"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_expression_errors_are_located(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        ev(text)
    assert str(info.value) == message


SOURCE = """\
# a comment
variable "A" { default = "x" }

image "python" {
  from = "debian:${var.A}"
  run {
    command = "true"
  }
  copy {
    src  = "a"
    dest = "/a"
  }
  env {
    K = "v"
  }
}
"""


def test_parse_keeps_source_order_and_locations() -> None:
    f = parse(SOURCE, "specs/a.hcl")
    assert f.path == "specs/a.hcl"
    variable, image = f.body
    assert isinstance(variable, Block) and isinstance(image, Block)
    assert (variable.type, variable.labels, variable.loc) == (
        "variable",
        ("A",),
        Location("specs/a.hcl", 2, 1),
    )
    assert image.label() == 'image "python"'
    assert [type(i).__name__ for i in image.body] == ["Attribute", "Block", "Block", "Block"]
    assert [b.type for b in image.blocks] == ["run", "copy", "env"]
    (attr,) = image.attributes
    assert isinstance(attr, Attribute)
    assert attr.loc == Location("specs/a.hcl", 5, 3)
    assert attr.expr.loc == Location("specs/a.hcl", 5, 10)
    scope = {"var": Namespace.of("var", {"A": "bookworm"})}
    assert evaluate(attr.expr, scope) == "debian:bookworm"


def test_parse_is_immutable_and_comparable() -> None:
    assert parse(SOURCE, "a.hcl") == parse(SOURCE, "a.hcl")
    with pytest.raises(AttributeError):
        parse(SOURCE, "a.hcl").path = "b"  # type: ignore[misc]


PARSE_ERRORS: list[tuple[str, str]] = [
    ("a = ", "f.hcl:1:5: syntax error: unexpected newline, expected an expression"),
    ('a = "x', "f.hcl:1:7: syntax error: unterminated string"),  # at the line end, as HCL
    (
        'app "x" {\n  a = [1,\n}\n',
        'f.hcl:3:1: syntax error: unexpected "}", expected an expression or "]"',
    ),
    (
        'app "x" {\n  apt = ["a" "b"]\n}\n',
        'f.hcl:2:14: syntax error: unexpected \'"\', expected "," or "]"',
    ),
    ('app "x" {\n  a = 1\n', 'f.hcl:1:9: syntax error: this "{" is never closed'),
    ("a = 1 2", 'f.hcl:1:7: syntax error: unexpected "2", expected a newline'),
    ("a = @", 'f.hcl:1:5: syntax error: unexpected "@", expected an expression'),
    (
        'app "x" {\n  a = 1\n  a = 2\n}\n',
        'f.hcl:3:3: app "x": attribute "a" is already set at f.hcl:2:3',
    ),
    ('app "x${y}" {}\n', "f.hcl:1:5: a block label must be a plain string, not a template"),
    (
        "a = <<EOT\nok\n  ${1 +}\nEOT\n",
        'f.hcl:3:8: syntax error: unexpected "}", expected an expression',
    ),
]


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_syntax_errors_are_one_located_line(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(text, "f.hcl")
    assert str(info.value) == message


def test_namespaces_resolve_lazily() -> None:
    calls: list[str] = []

    def resolve(name: str, loc: Location) -> Value:
        calls.append(name)
        return name.upper()

    scope = {"local": Namespace("local", ["a", "b"], resolve)}
    assert evaluate(parse_expression("local.b"), scope) == "B"
    assert calls == ["b"]


class DictCache:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.hits = 0

    def get(self, key: str) -> bytes | None:
        found = self.data.get(key)
        self.hits += found is not None
        return found

    def put(self, key: str, data: bytes) -> None:
        self.data[key] = data


def test_parse_cache_returns_the_same_file_and_ignores_bad_entries(tmp_path: Path) -> None:
    path = tmp_path / "a.hcl"
    path.write_text(SOURCE)
    cache = DictCache()
    first = parse_file(path, "specs/a.hcl", cache)
    assert first == parse(SOURCE, "specs/a.hcl")
    (key,) = cache.data
    assert cache.hits == 0
    assert parse_file(path, "specs/a.hcl", cache) == first
    assert cache.hits == 1
    assert parse_file(path, "other/a.hcl", cache).path == "other/a.hcl"  # the path is keyed
    cache.data[key] = b"not a pickle"
    assert parse_file(path, "specs/a.hcl", cache) == first
    path.write_text(SOURCE.replace('default = "x"', 'default = "y"'))
    changed = parse_file(path, "specs/a.hcl", cache)
    assert changed != first and changed == parse_file(path, "specs/a.hcl")
