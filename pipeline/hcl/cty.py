"""Typed HCL values, after go-cty's type system. Pure.

Types: the primitives ``string``, ``number`` and ``bool``; the collections
``list(T)``, ``set(T)`` and ``map(T)``; the structural ``tuple([...])`` and
``object({...})``; the dynamic pseudo-type ``any``; and one capsule type, ``block``,
for references to other blocks (``image.python``).

A :class:`V` is a type and its data: ``str`` / ``Fraction`` (see
:mod:`pipeline.hcl.numbers`) / ``bool`` for primitives, a tuple of V for lists, sets
(kept in cty's order: strings and numbers sorted, then the rest by their JSON text)
and tuples, a dict of V with sorted keys for maps and objects, a
:class:`~pipeline.hcl.values.BlockRef` for a block reference, and ``None`` for null.
Two V are ``==`` when cty's RawEquals would say so (same type, same data).

:func:`plain` and :func:`typed` convert to and from the plain Python values the spec
loader works with (``tuple`` for sequences, ``dict`` for objects, ``int``/``float``).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TypeAlias

from pipeline.hcl.numbers import format_number, round_number

# --------------------------------------------------------------------------- types


class Type:
    """An HCL type. Subclasses are frozen and hashable; compare with ``==``."""

    def __str__(self) -> str:
        return type_string(self)


@dataclass(frozen=True)
class Primitive(Type):
    name: str  # "string", "number", "bool"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Dynamic(Type):
    def __str__(self) -> str:
        return "any"


@dataclass(frozen=True)
class Capsule(Type):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class ListType(Type):
    elem: Type

    def __str__(self) -> str:
        return type_string(self)


@dataclass(frozen=True)
class SetType(Type):
    elem: Type

    def __str__(self) -> str:
        return type_string(self)


@dataclass(frozen=True)
class MapType(Type):
    elem: Type

    def __str__(self) -> str:
        return type_string(self)


@dataclass(frozen=True)
class TupleType(Type):
    elems: tuple[Type, ...]

    def __str__(self) -> str:
        return type_string(self)


@dataclass(frozen=True)
class ObjectType(Type):
    attrs: tuple[tuple[str, Type], ...]  # sorted by name
    optional: frozenset[str] = field(default=frozenset())

    @classmethod
    def of(cls, attrs: Mapping[str, Type], optional: Iterable[str] = ()) -> ObjectType:
        return cls(tuple(sorted(attrs.items())), frozenset(optional))

    @property
    def attr_types(self) -> dict[str, Type]:
        return dict(self.attrs)

    def __str__(self) -> str:
        return type_string(self)


STRING = Primitive("string")
NUMBER = Primitive("number")
BOOL = Primitive("bool")
DYNAMIC = Dynamic()
BLOCK = Capsule("block")
EMPTY_TUPLE = TupleType(())
EMPTY_OBJECT = ObjectType(())

CollectionType: TypeAlias = "ListType | SetType | MapType"


def is_collection(t: Type) -> bool:
    return isinstance(t, ListType | SetType | MapType)


def is_sequence(t: Type) -> bool:
    """list, set or tuple: the types a splat or ``...`` iterates."""
    return isinstance(t, ListType | SetType | TupleType)


def element_type(t: Type) -> Type:
    assert isinstance(t, ListType | SetType | MapType)
    return t.elem


def has_dynamic(t: Type) -> bool:
    if isinstance(t, Dynamic):
        return True
    if isinstance(t, ListType | SetType | MapType):
        return has_dynamic(t.elem)
    if isinstance(t, TupleType):
        return any(has_dynamic(e) for e in t.elems)
    if isinstance(t, ObjectType):
        return any(has_dynamic(a) for _, a in t.attrs)
    return False


def type_string(t: Type) -> str:
    """The type as an HCL type expression: ``list(string)``, ``object({a=number})``."""
    if isinstance(t, Primitive | Capsule | Dynamic):
        return str(t)
    if isinstance(t, ListType):
        return f"list({type_string(t.elem)})"
    if isinstance(t, SetType):
        return f"set({type_string(t.elem)})"
    if isinstance(t, MapType):
        return f"map({type_string(t.elem)})"
    if isinstance(t, TupleType):
        return "tuple([" + ",".join(type_string(e) for e in t.elems) + "])"
    assert isinstance(t, ObjectType)
    parts = []
    for name, attr in t.attrs:
        text = type_string(attr)
        parts.append(f"{name}=optional({text})" if name in t.optional else f"{name}={text}")
    return "object({" + ",".join(parts) + "})"


def friendly(t: Type) -> str:
    """A type for messages: "string", "list of string", "tuple", "object"."""
    if isinstance(t, ListType):
        return f"list of {friendly(t.elem)}"
    if isinstance(t, SetType):
        return f"set of {friendly(t.elem)}"
    if isinstance(t, MapType):
        return f"map of {friendly(t.elem)}"
    if isinstance(t, TupleType):
        return "tuple"
    if isinstance(t, ObjectType):
        return "object"
    if isinstance(t, Capsule):
        return "block reference"
    return str(t)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, eq=True)
class V:
    """One HCL value: its type and data (see the module docstring). Immutable."""

    type: Type
    data: object

    @property
    def is_null(self) -> bool:
        return self.data is None

    @property
    def items(self) -> tuple[V, ...]:
        """The elements of a list, set or tuple."""
        assert isinstance(self.data, tuple)
        return self.data

    @property
    def attrs(self) -> dict[str, V]:
        """The elements of a map or object, keys sorted."""
        assert isinstance(self.data, dict)
        return self.data

    @property
    def text(self) -> str:
        assert isinstance(self.data, str)
        return self.data

    @property
    def number(self) -> Fraction:
        assert isinstance(self.data, Fraction)
        return self.data

    @property
    def flag(self) -> bool:
        assert isinstance(self.data, bool)
        return self.data

    def __repr__(self) -> str:
        return f"V({type_string(self.type)}, {show(self)})"


def null(t: Type = DYNAMIC) -> V:
    return V(t, None)


NULL = null()


def string(text: str) -> V:
    """A string value; like cty, normalised to Unicode NFC."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return V(STRING, text)


def number(value: int | float | Fraction) -> V:
    if isinstance(value, bool):
        raise TypeError("a bool is not a number")
    frac = value if isinstance(value, Fraction) else Fraction(value)
    return V(NUMBER, round_number(frac))


TRUE = V(BOOL, True)
FALSE = V(BOOL, False)


def boolean(value: bool) -> V:
    return TRUE if value else FALSE


def tuple_of(items: Iterable[V]) -> V:
    values = tuple(items)
    return V(TupleType(tuple(v.type for v in values)), values)


def object_of(attrs: Mapping[str, V]) -> V:
    ordered = dict(sorted(attrs.items()))
    return V(ObjectType(tuple((k, v.type) for k, v in ordered.items())), ordered)


def list_of(elem: Type, items: Iterable[V]) -> V:
    """A list whose items already have type ``elem`` (callers convert first)."""
    return V(ListType(elem), tuple(items))


def map_of(elem: Type, attrs: Mapping[str, V]) -> V:
    return V(MapType(elem), dict(sorted(attrs.items())))


def set_of(elem: Type, items: Iterable[V]) -> V:
    """A set of already-converted items: duplicates dropped, cty's order."""
    unique: list[V] = []
    for item in items:
        if not any(item == seen for seen in unique):
            unique.append(item)
    return V(SetType(elem), tuple(sorted(unique, key=set_order)))


def set_order(value: V) -> tuple[int, object]:
    """Sort key for set elements: like cty, strings and numbers in their natural
    order, bools false first, other values in a fixed but arbitrary order (their JSON
    text), nulls last."""
    if value.data is None:
        return (3, "")
    if isinstance(value.data, bool):
        return (0, value.data)
    if isinstance(value.data, Fraction | str):
        return (1, value.data)
    return (2, show(value))


def block_ref(ref: object) -> V:
    return V(BLOCK, ref)


def length(value: V) -> int:
    if isinstance(value.data, str):
        return len(value.data)
    assert isinstance(value.data, tuple | dict)
    return len(value.data)


def equals(a: V, b: V) -> bool:
    """HCL's ``==``: nulls equal each other; otherwise the types must be identical and
    the contents equal, element by element."""
    if a.is_null or b.is_null:
        return a.is_null and b.is_null
    if a.type != b.type:
        return False
    if isinstance(a.data, tuple) and isinstance(b.data, tuple):
        return len(a.data) == len(b.data) and all(
            equals(x, y) for x, y in zip(a.data, b.data, strict=True)
        )
    if isinstance(a.data, dict) and isinstance(b.data, dict):
        return a.data.keys() == b.data.keys() and all(equals(a.data[k], b.data[k]) for k in a.data)
    return a.data == b.data


# --------------------------------------------------------------------------- text


def show(value: V) -> str:
    """A compact HCL-like rendering for messages and reprs."""
    data = value.data
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "true" if data else "false"
    if isinstance(data, Fraction):
        return format_number(data)
    if isinstance(data, str):
        return json.dumps(data, ensure_ascii=False)
    if isinstance(data, tuple):
        return "[" + ", ".join(show(v) for v in data) + "]"
    if isinstance(data, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {show(v)}" for k, v in data.items()) + "}"
    return str(getattr(data, "id", data))


def describe(value: V) -> str:
    """What a value is, for messages: "a string", "null", "a list of string"."""
    if value.data is None:
        return "null"
    name = friendly(value.type)
    if name == "any":
        return "a value of any type"
    return ("an " if name[0] in "aeiou" else "a ") + name


# --------------------------------------------------------------------------- plain values


def plain(value: V) -> object:
    """``value`` as a plain Python value: None, bool, int (integral numbers) or float,
    str, tuple (lists, sets, tuples), dict with sorted keys (maps, objects), or the
    BlockRef of a block reference."""
    data = value.data
    if data is None or isinstance(data, bool | str):
        return data
    if isinstance(data, Fraction):
        if data.denominator == 1:
            return data.numerator
        return float(data)
    if isinstance(data, tuple):
        return tuple(plain(v) for v in data)
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    return data


def typed(value: object) -> V:
    """A plain Python value (see :func:`plain`) as a V; a V is returned as is.
    Sequences become tuples and dicts objects, as HCL's own constructors make them."""
    if isinstance(value, V):
        return value
    if value is None:
        return NULL
    if isinstance(value, bool):
        return boolean(value)
    if isinstance(value, int | float | Fraction):
        return number(value)
    if isinstance(value, str):
        return string(value)
    if isinstance(value, tuple | list):
        return tuple_of(typed(v) for v in value)
    if isinstance(value, dict):
        return object_of({str(k): typed(v) for k, v in value.items()})
    if hasattr(value, "kind") and hasattr(value, "name"):  # a BlockRef
        return block_ref(value)
    raise TypeError(f"not an HCL value: {value!r}")
