"""Variable overrides of bake files: an environment or ``--var`` string converted to a
variable's type, as buildx's ``hclparser`` converts it. Pure.

Bools read as Go's ``strconv.ParseBool``, numbers as ``ParseFloat`` (no infinities);
lists, sets and tuples of primitives from CSV, maps from ``key:value`` CSV fields;
``NAME_JSON`` values as JSON of the declared type.
"""

from __future__ import annotations

import csv
import io

from pipeline.hcl import cty
from pipeline.hcl.convert import ConversionError, convert
from pipeline.hcl.cty import V
from pipeline.hcl.fn_encoding import parse_json
from pipeline.hcl.numbers import parse_decimal

GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def override_value(raw: str, is_json: bool, want: cty.Type | None, default: V | None) -> V:
    """An environment / ``--var`` string as a variable value (see the module docstring).
    ValueError with the reason when it does not fit."""
    if want is not None and is_json:
        try:
            return convert(parse_json(raw), want)
        except (ValueError, ConversionError) as exc:
            raise ValueError(f"is not JSON of type {cty.type_string(want)}: {exc}") from None
    if want is not None and isinstance(
        want, cty.ListType | cty.SetType | cty.TupleType | cty.MapType
    ):
        return _from_csv(raw, want)
    if want is not None and isinstance(want, cty.Primitive):
        return primitive(raw, want)
    if want is not None:
        raise ValueError(
            f"cannot be given for a variable of type {cty.type_string(want)}; use JSON"
        )
    if default is None or default.is_null:
        return cty.string(raw)
    if isinstance(default.type, cty.Primitive):
        return primitive(raw, default.type)
    raise ValueError(f"cannot override a {cty.friendly(default.type)} default; declare a type")


def primitive(raw: str, want: cty.Type) -> V:
    if want == cty.STRING:
        return cty.string(raw)
    if want == cty.BOOL:
        if raw in GO_TRUE:
            return cty.TRUE
        if raw in GO_FALSE:
            return cty.FALSE
        raise ValueError(f"{raw!r} is not a bool")
    try:
        number = float(raw) if raw.strip() == raw else float("nan")
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{raw!r} is not a number")
    parsed = parse_decimal(raw)
    return cty.V(cty.NUMBER, parsed) if parsed is not None else cty.number(number)


def _csv_fields(raw: str) -> list[str]:
    try:
        return next(csv.reader(io.StringIO(raw)), [])
    except csv.Error as exc:
        raise ValueError(f"is not CSV: {exc}") from None


def _from_csv(raw: str, want: cty.Type) -> V:
    fields = _csv_fields(raw)
    if isinstance(want, cty.ListType | cty.SetType):
        if not isinstance(want.elem, cty.Primitive):
            raise ValueError(f"cannot be CSV for {cty.type_string(want)}; use JSON")
        items = [primitive(f, want.elem) for f in fields]
        if isinstance(want, cty.ListType):
            return cty.list_of(want.elem, items)
        return cty.set_of(want.elem, items)
    if isinstance(want, cty.TupleType):
        if len(fields) != len(want.elems):
            raise ValueError(
                f"has {len(fields)} fields; {cty.type_string(want)} needs {len(want.elems)}"
            )
        if not all(isinstance(e, cty.Primitive) for e in want.elems):
            raise ValueError(f"cannot be CSV for {cty.type_string(want)}; use JSON")
        return cty.tuple_of(primitive(f, t) for f, t in zip(fields, want.elems, strict=True))
    assert isinstance(want, cty.MapType)
    if not isinstance(want.elem, cty.Primitive):
        raise ValueError(f"cannot be CSV for {cty.type_string(want)}; use JSON")
    out: dict[str, V] = {}
    for f in fields:
        pair = next(csv.reader(io.StringIO(f), delimiter=":"), [])
        if len(pair) != 2:
            raise ValueError(f"has {f!r}, which is not one key:value pair")
        out[pair[0]] = primitive(pair[1], want.elem)
    return cty.map_of(want.elem, out)
