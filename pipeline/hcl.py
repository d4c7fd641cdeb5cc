"""HCL2 front end: parse spec text into small immutable values, and evaluate expressions.

Pure: no I/O except :func:`parse_file` reading the file it is given. The tree side of
parsing lives in ``pipeline._hcl_parse`` (the only importer of ``hcl2`` and ``lark``),
loaded on the first real parse.

* :func:`parse` turns text into a :class:`File`: blocks and attributes in source order,
  each with its :class:`~pipeline.errors.Location`. Attribute values stay unevaluated
  :class:`Expr` trees, built from python-hcl2's lark parse tree (never from strings).
  Syntax errors become one-line :class:`~pipeline.errors.SpecError` s.
* :func:`evaluate` computes an expression's value in a scope. Values are plain Python:
  ``None``, ``bool``, ``int``/``float`` (integral results are ``int``), ``str``,
  ``tuple`` (lists) and ``dict`` with sorted keys (objects), plus :class:`BlockRef` for
  ``image.NAME`` / ``app.NAME`` / ``group.NAME``. Every error carries the location of the
  offending expression.

The lark grammar is loaded once per process (``hcl2.parser.parser`` is cached); with
python-hcl2's grammar cache present that costs about 0.1 s, later parses cost only
their own size.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeAlias

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
        resolve: Callable[[str, Location], Value],
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

    def attr(self, key: str, loc: Location) -> Value:
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


def _number(value: float) -> int | float:
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
    value: bool | int | float | str | None


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


_PLACEHOLDER = "\0item"


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


# --------------------------------------------------------------------------- parsing


def parse(text: str, path: str) -> File:
    """Parse HCL text. ``path`` is what locations show. Raises SpecError on bad syntax,
    on a duplicate attribute in one body, and on interpolation in a block label.

    The parser (python-hcl2 and lark, about 45 ms to import) is loaded on first use
    only, so a command whose parsed specs all come from the cache never loads it."""
    from pipeline import _hcl_parse

    return _hcl_parse.parse(text, path)


class ParseCache(Protocol):
    """Storage for parsed files between processes, owned by the caller (e.g. a
    directory in the store). Keys are hex digests; values are opaque bytes."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...


# Bump when the classes of a parsed File change, so stale cache entries are never used.
PARSE_FORMAT = 1


def _hcl2_version() -> str:
    """python-hcl2's version file, read without importing the package (and lark)."""
    import importlib.util

    spec = importlib.util.find_spec("hcl2")
    if spec is None or spec.origin is None:
        return "unknown"
    try:
        return (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return "unknown"


def parse_file(path: Path, display: str | None = None, cache: ParseCache | None = None) -> File:
    """Read and parse one file; locations show ``display`` (default ``str(path)``).

    With ``cache``, a file whose text, display path, python-hcl2 version and
    PARSE_FORMAT were seen before is unpickled instead of parsed (about ten times
    faster than lark); a miss parses and stores. An unreadable entry counts as a miss.
    The cache holds pickles, so it must be as trusted as the spec files themselves.
    """
    text = path.read_text(encoding="utf-8")
    shown = display or str(path)
    if cache is None:
        return parse(text, shown)
    digest = hashlib.sha256()
    for part in (str(PARSE_FORMAT), _hcl2_version(), shown, text):
        digest.update(part.encode())
        digest.update(b"\0")
    key = digest.hexdigest()
    data = cache.get(key)
    if data is not None:
        try:
            cached = pickle.loads(data)
        except Exception:
            cached = None
        if isinstance(cached, File) and cached.path == shown:
            return cached
    parsed = parse(text, shown)
    cache.put(key, pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL))
    return parsed


def parse_expression(text: str, path: str = "<expr>") -> Expr:
    """Parse one expression (``1 + var.x``); for tests and command-line values."""
    from pipeline import _hcl_parse

    return _hcl_parse.parse_expression(text, path)


# --------------------------------------------------------------------------- evaluation


def evaluate(expr: Expr, scope: Scope) -> Value:
    """The value of ``expr`` with root names from ``scope``. Raises SpecError located
    at the offending sub-expression. Pure."""
    value = _eval(expr, scope)
    return value


def _eval(expr: Expr, scope: Scope) -> Value:
    result = _eval_any(expr, scope)
    if isinstance(result, Namespace):
        raise SpecError(
            expr.loc, f'"{result.name}" is not a value on its own; write {result.name}.NAME'
        )
    return result


def _eval_any(expr: Expr, scope: Scope) -> Value | Namespace:
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Template):
        return _eval_template(expr, scope)
    if isinstance(expr, Variable):
        if expr.name not in scope:
            names = sorted(n for n in scope if n != _PLACEHOLDER)
            raise SpecError(
                expr.loc, f'unknown reference "{expr.name}"', hint=did_you_mean(expr.name, names)
            )
        return scope[expr.name]
    if isinstance(expr, GetAttr):
        target = _eval_any(expr.target, scope)
        if isinstance(target, Namespace):  # a reference: locate it where it starts
            return target.attr(expr.name, expr.loc)
        return _get(target, expr.name, expr.name_loc)
    if isinstance(expr, Index):
        target = _eval_any(expr.target, scope)
        key = _eval(expr.key, scope)
        if isinstance(target, Namespace):
            return target.attr(_object_key(key, expr.key.loc), expr.loc)
        return _index(target, key, expr.key.loc)
    if isinstance(expr, Splat):
        return _eval_splat(expr, scope)
    if isinstance(expr, TupleExpr):
        return tuple(_eval(i, scope) for i in expr.items)
    if isinstance(expr, ObjectExpr):
        out: dict[str, Value] = {}
        for key_expr, value_expr in expr.items:
            key = _object_key(_eval(key_expr, scope), key_expr.loc)
            out[key] = _eval(value_expr, scope)
        return dict(sorted(out.items()))
    if isinstance(expr, Unary):
        return _eval_unary(expr, scope)
    if isinstance(expr, Binary):
        return _eval_binary(expr, scope)
    if isinstance(expr, Conditional):
        cond = _to_bool(_eval(expr.cond, scope), expr.cond.loc, "the condition")
        return _eval(expr.then if cond else expr.otherwise, scope)
    if isinstance(expr, ForExpr):
        return _eval_for(expr, scope)
    if isinstance(expr, Call):
        return _eval_call(expr, scope)
    raise SpecError(expr.loc, f"cannot evaluate {type(expr).__name__}")  # pragma: no cover


def _get(target: Value, name: str, loc: Location) -> Value:
    if isinstance(target, dict):
        if name not in target:
            raise SpecError(
                loc, f'object has no attribute "{name}"', hint=did_you_mean(name, list(target))
            )
        return target[name]
    raise SpecError(loc, f'cannot read attribute "{name}" of {describe(target)}')


def _index(target: Value, key: Value, loc: Location) -> Value:
    if isinstance(target, dict):
        return _get(target, _object_key(key, loc), loc)
    if isinstance(target, tuple):
        number = _to_number(key, loc, "the index")
        if not float(number).is_integer():
            raise SpecError(loc, f"the index must be a whole number, found {format_number(number)}")
        i = int(number)
        if not 0 <= i < len(target):
            raise SpecError(loc, f"index {i} is out of range for a list of {len(target)} items")
        return target[i]
    raise SpecError(loc, f"cannot index {describe(target)}")


def _eval_splat(expr: Splat, scope: Scope) -> Value:
    target = _eval(expr.target, scope)
    if target is None:
        return ()
    items = target if isinstance(target, tuple) else (target,)
    if not expr.ops:
        return items
    last = expr.ops[-1]
    out = []
    for item in items:
        inner = {**scope, _PLACEHOLDER: item}
        out.append(_eval(last, inner))
    return tuple(out)


def _object_key(key: Value, loc: Location) -> str:
    text = to_string(key)
    if text is None:
        raise SpecError(loc, f"an object key must be a string, found {describe(key)}")
    return text


def _to_number(value: Value, loc: Location, what: str) -> int | float:
    if isinstance(value, bool):
        raise SpecError(loc, f"{what} must be a number, found a bool")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        parsed = parse_number(value)
        if parsed is not None:
            return parsed
        raise SpecError(loc, f"{what} must be a number, found the string {json.dumps(value)}")
    raise SpecError(loc, f"{what} must be a number, found {describe(value)}")


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
    return _number(value) if math.isfinite(value) else None


def _to_bool(value: Value, loc: Location, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise SpecError(loc, f"{what} must be a bool, found {describe(value)}")


def _eval_unary(expr: Unary, scope: Scope) -> Value:
    value = _eval(expr.operand, scope)
    if expr.op == "!":
        return not _to_bool(value, expr.operand.loc, 'the operand of "!"')
    return _number(-_to_number(value, expr.operand.loc, 'the operand of "-"'))


def _equal(a: Value, b: Value) -> bool:
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _kind(value: Value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _eval_binary(expr: Binary, scope: Scope) -> Value:
    op = expr.op
    if op in ("&&", "||"):
        left = _to_bool(_eval(expr.left, scope), expr.left.loc, f'the left operand of "{op}"')
        if (op == "&&" and not left) or (op == "||" and left):
            return left
        return _to_bool(_eval(expr.right, scope), expr.right.loc, f'the right operand of "{op}"')
    left_v = _eval(expr.left, scope)
    right_v = _eval(expr.right, scope)
    if op == "==":
        return _equal(left_v, right_v)
    if op == "!=":
        return not _equal(left_v, right_v)
    a = _to_number(left_v, expr.left.loc, f'the left operand of "{op}"')
    b = _to_number(right_v, expr.right.loc, f'the right operand of "{op}"')
    if op == "<":
        return a < b
    if op == ">":
        return a > b
    if op == "<=":
        return a <= b
    if op == ">=":
        return a >= b
    if op == "+":
        return _number(a + b)
    if op == "-":
        return _number(a - b)
    if op == "*":
        return _number(a * b)
    if b == 0 and op in ("/", "%"):
        raise SpecError(expr.right.loc, "division by zero")
    if op == "/":
        return _number(a / b)
    if op == "%":
        return _number(math.fmod(a, b))
    raise SpecError(expr.loc, f'unknown operator "{op}"')  # pragma: no cover


def _iterate(value: Value, loc: Location) -> Iterator[tuple[Value, Value]]:
    if isinstance(value, tuple):
        yield from enumerate(value)
    elif isinstance(value, dict):
        yield from sorted(value.items())
    else:
        raise SpecError(loc, f"cannot iterate over {describe(value)}")


def _eval_for(expr: ForExpr, scope: Scope) -> Value:
    collection = _eval(expr.collection, scope)
    items: list[Value] = []
    keyed: dict[str, Value] = {}
    for key, value in _iterate(collection, expr.collection.loc):
        inner = dict(scope)
        inner[expr.value_var] = value
        if expr.key_var is not None:
            inner[expr.key_var] = key
        if expr.cond is not None and not _to_bool(
            _eval(expr.cond, inner), expr.cond.loc, "a for condition"
        ):
            continue
        if expr.key is None:
            items.append(_eval(expr.value, inner))
            continue
        out_key = _object_key(_eval(expr.key, inner), expr.key.loc)
        out_value = _eval(expr.value, inner)
        if expr.group:
            group = keyed.setdefault(out_key, ())
            assert isinstance(group, tuple)
            keyed[out_key] = (*group, out_value)
        elif out_key in keyed:
            raise SpecError(
                expr.key.loc,
                f'duplicate key "{out_key}" in a for expression (add "..." to group values)',
            )
        else:
            keyed[out_key] = out_value
    if expr.key is None:
        return tuple(items)
    return dict(sorted(keyed.items()))


def _interpolate(value: Value, loc: Location) -> str:
    text = to_string(value)
    if text is not None:
        return text
    if isinstance(value, BlockRef):
        raise SpecError(
            loc,
            f"cannot use the block reference {value.id} inside a string; "
            f"write {value.id} on its own",
        )
    raise SpecError(loc, f"cannot interpolate {describe(value)} into a string")


def _eval_template(expr: Template, scope: Scope) -> Value:
    if len(expr.parts) == 1 and isinstance(expr.parts[0], Expr):
        return _eval(expr.parts[0], scope)  # "${x}" is x itself, as in HCL
    out: list[str] = []
    _render(expr.parts, scope, out)
    return "".join(out)


def _render(parts: Sequence[TemplatePart], scope: Scope, out: list[str]) -> None:
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, Expr):
            out.append(_interpolate(_eval(part, scope), part.loc))
        elif isinstance(part, TemplateIf):
            cond = _to_bool(_eval(part.cond, scope), part.cond.loc, "the %{if} condition")
            _render(part.then if cond else part.otherwise, scope, out)
        else:
            for key, value in _iterate(_eval(part.collection, scope), part.collection.loc):
                inner = dict(scope)
                inner[part.value] = value
                if part.key is not None:
                    inner[part.key] = key
                _render(part.body, inner, out)


# --------------------------------------------------------------------------- functions


class FunctionError(Exception):
    """Raised by a function implementation; the evaluator adds location and name."""


_Fn = Callable[..., Value]


@dataclass(frozen=True)
class Function:
    impl: _Fn
    min_args: int
    max_args: int | None  # None: variadic


FUNCTIONS: dict[str, Function] = {}


def _fn(name: str, min_args: int, max_args: int | None = -1) -> Callable[[_Fn], _Fn]:
    def register(impl: _Fn) -> _Fn:
        FUNCTIONS[name] = Function(impl, min_args, min_args if max_args == -1 else max_args)
        return impl

    return register


def _eval_call(expr: Call, scope: Scope) -> Value:
    fn = FUNCTIONS.get(expr.name)
    if fn is None:
        raise SpecError(
            expr.loc,
            f'unknown function "{expr.name}"',
            hint=did_you_mean(expr.name, sorted(FUNCTIONS)),
        )
    args = [_eval(a, scope) for a in expr.args]
    if expr.expand_last and args:
        last = args.pop()
        if not isinstance(last, tuple):
            raise SpecError(expr.args[-1].loc, f'"..." needs a list, found {describe(last)}')
        args.extend(last)
    if len(args) < fn.min_args or (fn.max_args is not None and len(args) > fn.max_args):
        if fn.max_args is None:
            wanted = f"at least {fn.min_args}"
        elif fn.max_args == fn.min_args:
            wanted = str(fn.min_args)
        else:
            wanted = f"{fn.min_args} to {fn.max_args}"
        plural = "" if wanted == "1" else "s"
        raise SpecError(
            expr.loc, f"{expr.name}(): expected {wanted} argument{plural}, got {len(args)}"
        )
    try:
        return fn.impl(*args)
    except FunctionError as exc:
        raise SpecError(expr.loc, f"{expr.name}(): {exc}") from None


def _arg_str(value: Value, n: int) -> str:
    text = to_string(value)
    if text is None:
        raise FunctionError(f"argument {n} must be a string, found {describe(value)}")
    return text


def _arg_list(value: Value, n: int) -> tuple[Value, ...]:
    if not isinstance(value, tuple):
        raise FunctionError(f"argument {n} must be a list, found {describe(value)}")
    return value


def _arg_map(value: Value, n: int) -> dict[str, Value]:
    if not isinstance(value, dict):
        raise FunctionError(f"argument {n} must be an object, found {describe(value)}")
    return value


def _arg_int(value: Value, n: int) -> int:
    number: int | float | None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        number = parse_number(value)
    else:
        number = None
    if number is None or not float(number).is_integer():
        raise FunctionError(f"argument {n} must be a whole number, found {describe(value)}")
    return int(number)


def _arg_strings(value: Value, n: int) -> list[str]:
    return [_arg_str(v, n) for v in _arg_list(value, n)]


@_fn("lower", 1)
def _lower(s: Value) -> Value:
    return _arg_str(s, 1).lower()


@_fn("upper", 1)
def _upper(s: Value) -> Value:
    return _arg_str(s, 1).upper()


@_fn("title", 1)
def _title(s: Value) -> Value:
    text = _arg_str(s, 1)
    return "".join(
        c.upper() if (i == 0 or text[i - 1].isspace()) else c for i, c in enumerate(text)
    )


@_fn("join", 2, None)
def _join(sep: Value, *lists: Value) -> Value:
    items: list[str] = []
    for i, lst in enumerate(lists, start=2):
        items.extend(_arg_strings(lst, i))
    return _arg_str(sep, 1).join(items)


@_fn("split", 2)
def _split(sep: Value, s: Value) -> Value:
    separator, text = _arg_str(sep, 1), _arg_str(s, 2)
    if not separator:
        raise FunctionError("the separator must not be empty")
    return tuple(text.split(separator))


@_fn("trimprefix", 2)
def _trimprefix(s: Value, prefix: Value) -> Value:
    return _arg_str(s, 1).removeprefix(_arg_str(prefix, 2))


@_fn("trimsuffix", 2)
def _trimsuffix(s: Value, suffix: Value) -> Value:
    return _arg_str(s, 1).removesuffix(_arg_str(suffix, 2))


@_fn("trimspace", 1)
def _trimspace(s: Value) -> Value:
    return _arg_str(s, 1).strip()


@_fn("replace", 3)
def _replace(s: Value, old: Value, new: Value) -> Value:
    target = _arg_str(old, 2)
    if not target:
        raise FunctionError("the substring to replace must not be empty")
    return _arg_str(s, 1).replace(target, _arg_str(new, 3))


@_fn("startswith", 2)
def _startswith(s: Value, prefix: Value) -> Value:
    return _arg_str(s, 1).startswith(_arg_str(prefix, 2))


@_fn("endswith", 2)
def _endswith(s: Value, suffix: Value) -> Value:
    return _arg_str(s, 1).endswith(_arg_str(suffix, 2))


@_fn("substr", 3)
def _substr(s: Value, offset: Value, length: Value) -> Value:
    text, start, count = _arg_str(s, 1), _arg_int(offset, 2), _arg_int(length, 3)
    if start < 0:
        start = max(0, len(text) + start)
    if count < -1:
        raise FunctionError("the length must be -1 (to the end) or more")
    return text[start:] if count == -1 else text[start : start + count]


def _format_one(verb: str, value: Value, precision: int | None) -> str:
    if verb == "s":
        return _arg_str(value, 2)
    if verb == "d":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise FunctionError(f"%d needs a whole number, found {describe(value)}")
        return str(_arg_int(value, 2))
    if verb == "f":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise FunctionError(f"%f needs a number, found {describe(value)}")
        number = parse_number(value) if isinstance(value, str) else value
        if number is None:
            raise FunctionError(f"%f needs a number, found {describe(value)}")
        return f"{float(number):.{6 if precision is None else precision}f}"
    if verb == "t":
        if not isinstance(value, bool):
            raise FunctionError(f"%t needs a bool, found {describe(value)}")
        return "true" if value else "false"
    if verb == "q":
        return json.dumps(_arg_str(value, 2), ensure_ascii=False)
    # %v
    text = to_string(value)
    return text if text is not None else _json(value)


@_fn("format", 1, None)
def _format(fmt: Value, *args: Value) -> Value:
    text = _arg_str(fmt, 1)
    out: list[str] = []
    i, used = 0, 0
    while i < len(text):
        c = text[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        j = i + 1
        precision: int | None = None
        if text[j : j + 1] == ".":
            k = j + 1
            while k < len(text) and text[k].isdigit():
                k += 1
            precision = int(text[j + 1 : k] or "0")
            j = k
        verb = text[j : j + 1]
        if verb == "%" and precision is None:
            out.append("%")
        elif verb in ("s", "d", "v", "q", "t", "f"):
            if used >= len(args):
                raise FunctionError(f"not enough arguments for the format {json.dumps(text)}")
            out.append(_format_one(verb, args[used], precision))
            used += 1
        else:
            raise FunctionError(f"unsupported verb %{verb} (use %s %d %v %q %t %f or %%)")
        i = j + 1
    if used < len(args):
        raise FunctionError(f"too many arguments for the format {json.dumps(text)}")
    return "".join(out)


@_fn("formatlist", 1, None)
def _formatlist(fmt: Value, *args: Value) -> Value:
    lengths = {len(a) for a in args if isinstance(a, tuple)}
    if len(lengths) > 1:
        raise FunctionError("all list arguments must have the same length")
    if not lengths:
        return (_format(fmt, *args),)
    (n,) = lengths
    return tuple(
        _format(fmt, *(a[i] if isinstance(a, tuple) else a for a in args)) for i in range(n)
    )


@_fn("concat", 0, None)
def _concat(*lists: Value) -> Value:
    out: list[Value] = []
    for i, lst in enumerate(lists, start=1):
        out.extend(_arg_list(lst, i))
    return tuple(out)


@_fn("distinct", 1)
def _distinct(lst: Value) -> Value:
    out: list[Value] = []
    for item in _arg_list(lst, 1):
        if not any(_equal(item, seen) for seen in out):
            out.append(item)
    return tuple(out)


@_fn("sort", 1)
def _sort(lst: Value) -> Value:
    return tuple(sorted(_arg_strings(lst, 1)))


@_fn("reverse", 1)
def _reverse(lst: Value) -> Value:
    return tuple(reversed(_arg_list(lst, 1)))


@_fn("flatten", 1)
def _flatten(lst: Value) -> Value:
    def walk(items: tuple[Value, ...]) -> Iterator[Value]:
        for item in items:
            if isinstance(item, tuple):
                yield from walk(item)
            else:
                yield item

    return tuple(walk(_arg_list(lst, 1)))


@_fn("length", 1)
def _length(value: Value) -> Value:
    if isinstance(value, str | tuple | dict):
        return len(value)
    raise FunctionError(f"argument 1 must be a string, list or object, found {describe(value)}")


@_fn("contains", 2)
def _contains(lst: Value, value: Value) -> Value:
    return any(_equal(item, value) for item in _arg_list(lst, 1))


@_fn("element", 2)
def _element(lst: Value, index: Value) -> Value:
    items = _arg_list(lst, 1)
    if not items:
        raise FunctionError("the list is empty")
    i = _arg_int(index, 2)
    if i < 0:
        raise FunctionError("the index must not be negative")
    return items[i % len(items)]


@_fn("range", 1, 3)
def _range(*args: Value) -> Value:
    numbers = []
    for i, a in enumerate(args, start=1):
        if isinstance(a, bool) or not isinstance(a, int | float):
            raise FunctionError(f"argument {i} must be a number, found {describe(a)}")
        numbers.append(a)
    if len(numbers) == 1:
        start, limit, step = 0, numbers[0], 1
    elif len(numbers) == 2:
        start, limit = numbers
        step = 1 if limit >= start else -1
    else:
        start, limit, step = numbers
    if step == 0:
        raise FunctionError("the step must not be zero")
    out: list[Value] = []
    value = start
    while (step > 0 and value < limit) or (step < 0 and value > limit):
        out.append(_number(value))
        value += step
        if len(out) > 1024:
            raise FunctionError("more than 1024 elements")
    return tuple(out)


@_fn("keys", 1)
def _keys(m: Value) -> Value:
    return tuple(sorted(_arg_map(m, 1)))


@_fn("values", 1)
def _values(m: Value) -> Value:
    mapping = _arg_map(m, 1)
    return tuple(mapping[k] for k in sorted(mapping))


@_fn("lookup", 2, 3)
def _lookup(m: Value, key: Value, *default: Value) -> Value:
    mapping, name = _arg_map(m, 1), _arg_str(key, 2)
    if name in mapping:
        return mapping[name]
    if default:
        return default[0]
    hint = did_you_mean(name, list(mapping))
    more = f' (did you mean "{hint}"?)' if hint else ""
    raise FunctionError(f'no key "{name}" and no default given{more}')


@_fn("merge", 0, None)
def _merge(*maps: Value) -> Value:
    out: dict[str, Value] = {}
    for i, m in enumerate(maps, start=1):
        if m is not None:
            out.update(_arg_map(m, i))
    return dict(sorted(out.items()))


@_fn("coalesce", 1, None)
def _coalesce(*values: Value) -> Value:
    for value in values:
        if value is not None and value != "":
            return value
    raise FunctionError("all arguments are null or empty")


@_fn("tostring", 1)
def _tostring(value: Value) -> Value:
    if value is None:
        return None
    text = to_string(value)
    if text is None:
        raise FunctionError(f"cannot convert {describe(value)} to a string")
    return text


@_fn("tonumber", 1)
def _tonumber(value: Value) -> Value:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        number = parse_number(value)
        if number is not None:
            return number
        raise FunctionError(f"cannot convert {json.dumps(value)} to a number")
    raise FunctionError(f"cannot convert {describe(value)} to a number")


@_fn("min", 1, None)
def _min(*values: Value) -> Value:
    return min(_arg_number(v, i) for i, v in enumerate(values, start=1))


@_fn("max", 1, None)
def _max(*values: Value) -> Value:
    return max(_arg_number(v, i) for i, v in enumerate(values, start=1))


def _arg_number(value: Value, n: int) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FunctionError(f"argument {n} must be a number, found {describe(value)}")
    return value


def _plain(value: Value) -> object:
    if isinstance(value, BlockRef):
        raise FunctionError(f"cannot encode the block reference {value.id}")
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _json(value: Value) -> str:
    return json.dumps(_plain(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


@_fn("jsonencode", 1)
def _jsonencode(value: Value) -> Value:
    return _json(value)
