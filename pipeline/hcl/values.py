"""HCL values and the syntax tree: small immutable values, no evaluation. Pure.

Values are plain Python: ``None``, ``bool``, ``int``/``float`` (integral results are
``int``), ``str``, ``tuple`` (lists) and ``dict`` with sorted keys (objects), plus
:class:`BlockRef` for ``image.NAME`` / ``app.NAME`` / ``group.NAME``. Expressions are
:class:`Expr` trees with a :class:`~pipeline.errors.Location` on every node; a parsed
file is a :class:`File` of :class:`Attribute` and :class:`Block` in source order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TypeAlias

from pipeline.errors import Location, SpecError, did_you_mean

# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class BlockRef:
    """A reference to another block, e.g. ``image.python``: the value of that
    expression. ``kind`` is "image", "app" or "group"; ``loc`` is where it was written."""

    kind: str
    name: str
    loc: Location | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return f"{self.kind}.{self.name}"


Value: TypeAlias = (
    "bool | int | float | str | tuple[Value, ...] | dict[str, Value] | BlockRef | None"
)


class Namespace:
    """A root name whose attributes are looked up on demand: ``var``, ``local``,
    ``matrix``, ``image``, ``app``, ``group``. An unknown attribute is a located
    error with a did-you-mean. A namespace is not itself a value."""

    def __init__(
        self,
        name: str,
        names: Iterable[str],
        resolve: Callable[[str, Location], object],
    ) -> None:
        self.name = name
        self.names = frozenset(names)
        self._resolve = resolve

    @classmethod
    def of(cls, name: str, values: Mapping[str, Value]) -> Namespace:
        """A namespace over fixed values (``var``, ``matrix``)."""
        return cls(name, values, lambda key, _loc: values[key])

    @classmethod
    def blocks(cls, kind: str, names: Iterable[str]) -> Namespace:
        """``kind.NAME`` evaluates to ``BlockRef(kind, NAME, <where it was written>)``."""
        return cls(kind, names, lambda key, loc: BlockRef(kind, key, loc))

    def attr(self, key: str, loc: Location) -> object:
        if key not in self.names:
            hint = did_you_mean(key, sorted(self.names))
            raise SpecError(
                loc,
                f'unknown reference "{self.name}.{key}"',
                hint=f"{self.name}.{hint}" if hint else None,
            )
        return self._resolve(key, loc)


Scope: TypeAlias = Mapping[str, "Value | Namespace"]


def describe(value: object) -> str:
    """A short phrase for a value's type, for messages: "a string", "a list", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, BlockRef):
        return f"a block reference ({value.id})"
    if isinstance(value, Namespace):
        return f'the namespace "{value.name}"'
    return type(value).__name__


def format_number(value: int | float) -> str:
    """Numbers as HCL prints them: integral values without a fraction."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value) if isinstance(value, int) else repr(value)


def to_string(value: Value) -> str | None:
    """HCL's automatic conversion to string: strings, numbers and bools convert;
    anything else gives None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format_number(value)
    return None


def integral(value: float) -> int | float:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


# --------------------------------------------------------------------------- syntax


@dataclass(frozen=True)
class Expr:
    """An unevaluated expression; ``loc`` is where it starts."""

    loc: Location


@dataclass(frozen=True)
class Literal(Expr):
    value: bool | int | float | Fraction | str | None


@dataclass(frozen=True)
class TemplateIf:
    cond: Expr
    then: tuple[TemplatePart, ...]
    otherwise: tuple[TemplatePart, ...]


@dataclass(frozen=True)
class TemplateFor:
    key: str | None
    value: str
    collection: Expr
    body: tuple[TemplatePart, ...]


TemplatePart: TypeAlias = "str | Expr | TemplateIf | TemplateFor"


@dataclass(frozen=True)
class Template(Expr):
    """A quoted string or heredoc: literal text, ``${...}`` and ``%{...}`` parts."""

    parts: tuple[TemplatePart, ...]


@dataclass(frozen=True)
class Variable(Expr):
    """A bare name: a root of the scope (``var``, ``local``) or a ``for`` variable."""

    name: str


@dataclass(frozen=True)
class GetAttr(Expr):
    target: Expr
    name: str
    name_loc: Location


@dataclass(frozen=True)
class Index(Expr):
    target: Expr
    key: Expr


@dataclass(frozen=True)
class Splat(Expr):
    """``x[*].a[0]`` / ``x.*.a``: ``ops`` (GetAttr/Index on a placeholder) per item."""

    target: Expr
    ops: tuple[GetAttr | Index, ...]


@dataclass(frozen=True)
class TupleExpr(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class ObjectExpr(Expr):
    items: tuple[tuple[Expr, Expr], ...]


@dataclass(frozen=True)
class Unary(Expr):
    op: str
    operand: Expr


@dataclass(frozen=True)
class Binary(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Conditional(Expr):
    cond: Expr
    then: Expr
    otherwise: Expr


@dataclass(frozen=True)
class ForExpr(Expr):
    """``[for k, v in coll : value if cond]`` or ``{for k, v in coll : key => value...}``."""

    key_var: str | None
    value_var: str
    collection: Expr
    key: Expr | None  # None for the tuple form
    value: Expr
    cond: Expr | None
    group: bool = False


@dataclass(frozen=True)
class Call(Expr):
    name: str
    args: tuple[Expr, ...]
    expand_last: bool = False


PLACEHOLDER = "\0item"


@dataclass(frozen=True)
class Attribute:
    """``name = expr`` in a body; ``loc`` is the position of the name."""

    name: str
    expr: Expr
    loc: Location


@dataclass(frozen=True)
class Block:
    """``type "label" ... { body }``; ``loc`` is the position of the type keyword."""

    type: str
    labels: tuple[str, ...]
    body: tuple[Attribute | Block, ...]
    loc: Location

    @property
    def attributes(self) -> tuple[Attribute, ...]:
        return tuple(i for i in self.body if isinstance(i, Attribute))

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(i for i in self.body if isinstance(i, Block))

    def label(self) -> str:
        """How messages name the block: ``app "web"``, ``locals``."""
        return " ".join([self.type, *(f'"{x}"' for x in self.labels)])


@dataclass(frozen=True)
class File:
    """One parsed spec file: its display path and top-level body in source order."""

    path: str
    body: tuple[Attribute | Block, ...]


def parse_number(text: str) -> int | float | None:
    """An HCL number from text (``"3"``, ``"1.5e3"``), or None when it is not one."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return integral(value) if math.isfinite(value) else None


def equal(a: Value, b: Value) -> bool:
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return a == b


def _kind(value: Value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__
