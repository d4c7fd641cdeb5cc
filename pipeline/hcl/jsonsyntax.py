"""HCL's JSON syntax: a JSON document -> the same located :class:`~pipeline.hcl.values.File`
the native parser makes. Pure.

JSON alone cannot tell a block from an attribute, so the caller gives a schema: the
block types (with their label counts and nested block types) of each body; every
other property is an attribute. As HashiCorp's JSON spec says, strings are templates
(``"${TAG}"`` is TAG itself), numbers keep full precision, arrays are tuples and
objects are objects; a block type's value is an object (or array of objects) per label
level, then the body or an array of bodies; ``"//"`` properties of bodies are comments;
duplicate properties are kept in order. Positions are exact for keys and values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.errors import Location, SpecError
from pipeline.hcl.numbers import parse_decimal
from pipeline.hcl.values import Attribute, Block, Expr, File, Literal, ObjectExpr, TupleExpr


@dataclass(frozen=True)
class BlockSchema:
    """A block type: how many labels it takes, and its own nested block types."""

    labels: int = 0
    blocks: Mapping[str, BlockSchema] = field(default_factory=dict)


# --------------------------------------------------------------------------- JSON tree


@dataclass(frozen=True)
class JValue:
    loc: Location


@dataclass(frozen=True)
class JScalar(JValue):
    kind: str  # "string", "number", "bool", "null"
    value: object


@dataclass(frozen=True)
class JArray(JValue):
    items: tuple[JValue, ...]


@dataclass(frozen=True)
class JObject(JValue):
    props: tuple[tuple[str, Location, JValue], ...]  # in order, duplicates kept


class _Reader:
    def __init__(self, text: str, path: str) -> None:
        self.text, self.path, self.pos = text, path, 0
        self.line, self.line_start = 1, 0

    def loc(self, pos: int | None = None) -> Location:
        p = self.pos if pos is None else pos
        return Location(self.path, self.line, p - self.line_start + 1)

    def fail(self, message: str) -> SpecError:
        return SpecError(self.loc(), f"JSON syntax error: {message}")

    def skip(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n and text[self.pos] in " \t\r\n":
            if text[self.pos] == "\n":
                self.line, self.line_start = self.line + 1, self.pos + 1
            self.pos += 1

    def value(self, depth: int = 0) -> JValue:
        if depth > 200:
            raise self.fail("nested too deeply")
        self.skip()
        if self.pos >= len(self.text):
            raise self.fail("unexpected end of file")
        c, loc = self.text[self.pos], self.loc()
        if c == "{":
            return self.object(loc, depth)
        if c == "[":
            self.pos += 1
            items: list[JValue] = []
            self.skip()
            if self.peek("]"):
                self.pos += 1
                return JArray(loc, ())
            while True:
                items.append(self.value(depth + 1))
                self.skip()
                if self.peek(","):
                    self.pos += 1
                    continue
                if self.peek("]"):
                    self.pos += 1
                    return JArray(loc, tuple(items))
                raise self.fail('expected "," or "]"')
        if c == '"':
            return JScalar(loc, "string", self.string())
        for word, kind, value in (("true", "bool", True), ("false", "bool", False)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return JScalar(loc, kind, value)
        if self.text.startswith("null", self.pos):
            self.pos += 4
            return JScalar(loc, "null", None)
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in "+-0123456789.eE":
            self.pos += 1
        raw = self.text[start : self.pos]
        if not raw or parse_decimal(raw) is None or raw.startswith(("+", ".")):
            self.pos = start
            raise self.fail(f"unexpected character {c!r}")
        return JScalar(loc, "number", raw)

    def peek(self, c: str) -> bool:
        return self.text.startswith(c, self.pos)

    def object(self, loc: Location, depth: int) -> JObject:
        self.pos += 1
        props: list[tuple[str, Location, JValue]] = []
        self.skip()
        if self.peek("}"):
            self.pos += 1
            return JObject(loc, ())
        while True:
            self.skip()
            if not self.peek('"'):
                raise self.fail("expected a property name in quotes")
            key_loc = self.loc()
            key = self.string()
            self.skip()
            if not self.peek(":"):
                raise self.fail('expected ":"')
            self.pos += 1
            props.append((key, key_loc, self.value(depth + 1)))
            self.skip()
            if self.peek(","):
                self.pos += 1
                continue
            if self.peek("}"):
                self.pos += 1
                return JObject(loc, tuple(props))
            raise self.fail('expected "," or "}"')

    def string(self) -> str:
        self.pos += 1
        out: list[str] = []
        text, n = self.text, len(self.text)
        while True:
            if self.pos >= n:
                raise self.fail("unterminated string")
            c = text[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\n" or ord(c) < 0x20:
                raise self.fail("control character in a string")
            if c != "\\":
                out.append(c)
                self.pos += 1
                continue
            esc = text[self.pos + 1 : self.pos + 2]
            simple = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n"}
            simple |= {"r": "\r", "t": "\t"}
            if esc in simple:
                out.append(simple[esc])
                self.pos += 2
            elif esc == "u":
                digits = text[self.pos + 2 : self.pos + 6]
                if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    raise self.fail("invalid \\u escape")
                code = int(digits, 16)
                self.pos += 6
                if 0xD800 <= code < 0xDC00 and text.startswith("\\u", self.pos):
                    low = int(text[self.pos + 2 : self.pos + 6], 16)
                    if 0xDC00 <= low < 0xE000:
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        self.pos += 6
                out.append(chr(code))
            else:
                raise self.fail(f"invalid escape \\{esc}")


def read_json(text: str, path: str) -> JValue:
    reader = _Reader(text, path)
    value = reader.value()
    reader.skip()
    if reader.pos != len(text):
        raise reader.fail("extra data after the document")
    return value


# --------------------------------------------------------------------------- to HCL


def parse_json(text: str, path: str, schema: Mapping[str, BlockSchema]) -> File:
    """A JSON HCL file; ``schema`` names the top-level block types. SpecError on bad
    JSON or a shape that does not fit (a block that is not an object, ...)."""
    root = read_json(text.removeprefix("\ufeff"), path)
    return File(path, tuple(_body(root, schema, "")))


def _bodies(value: JValue) -> list[JObject]:
    if isinstance(value, JObject):
        return [value]
    if isinstance(value, JArray) and all(isinstance(i, JObject) for i in value.items):
        return [i for i in value.items if isinstance(i, JObject)]
    raise SpecError(value.loc, "a body must be a JSON object or an array of objects")


def _body(value: JValue, schema: Mapping[str, BlockSchema], owner: str) -> list[Attribute | Block]:
    items: list[Attribute | Block] = []
    seen: dict[str, Location] = {}
    for obj in _bodies(value):
        for key, key_loc, prop in obj.props:
            if key == "//":
                continue
            if key in schema:
                items.extend(_blocks(key, key_loc, prop, schema[key], ()))
                continue
            if key in seen:
                where = f"{owner}: " if owner else ""
                raise SpecError(key_loc, f'{where}attribute "{key}" is already set at {seen[key]}')
            seen[key] = key_loc
            items.append(Attribute(key, expression(prop), key_loc))
    return items


def _blocks(
    kind: str, loc: Location, value: JValue, schema: BlockSchema, labels: tuple[str, ...]
) -> list[Block]:
    if len(labels) < schema.labels:
        out: list[Block] = []
        for obj in _bodies(value):
            for label, label_loc, inner in obj.props:
                out.extend(_blocks(kind, label_loc, inner, schema, (*labels, label)))
        return out
    owner = " ".join([kind, *(f'"{x}"' for x in labels)])
    return [
        Block(kind, labels, tuple(_body(body, schema.blocks, owner)), loc)
        for body in _bodies(value)
    ]


def expression(value: JValue) -> Expr:
    """A JSON value as an expression: strings are templates."""
    from pipeline.hcl import syntax

    if isinstance(value, JScalar):
        if value.kind == "string":
            assert isinstance(value.value, str)
            return syntax.parse_template(value.value, value.loc)
        if value.kind == "number":
            assert isinstance(value.value, str)
            return Literal(value.loc, parse_decimal(value.value))
        return Literal(value.loc, value.value)  # type: ignore[arg-type]
    if isinstance(value, JArray):
        return TupleExpr(value.loc, tuple(expression(i) for i in value.items))
    assert isinstance(value, JObject)
    items = [
        (syntax.parse_template(key, key_loc), expression(v)) for key, key_loc, v in value.props
    ]
    return ObjectExpr(value.loc, tuple(items))
