"""Type conversion and unification, as go-cty's ``convert`` package defines them. Pure.

:func:`convert` turns a value into one of another type or raises
:class:`ConversionError` (a message without a location; callers add it). Conversions
are the "unsafe" set, the one HCL applies to function arguments, variable defaults
and operands: besides number/bool -> string, a string converts to a number when it
reads as one and to a bool when it is ``true``/``false``/``1``/``0``; a list converts
to a set. :func:`unify` finds the type a set of types can all convert to (the result
type of a conditional, of ``tolist`` over a tuple, ...), with cty's preferences:
string over number and bool, list over tuple, map over object.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.hcl.cty import (
    BOOL,
    DYNAMIC,
    NUMBER,
    STRING,
    Dynamic,
    ListType,
    MapType,
    ObjectType,
    Primitive,
    SetType,
    TupleType,
    Type,
    V,
    boolean,
    friendly,
    list_of,
    map_of,
    null,
    object_of,
    set_of,
    string,
    tuple_of,
)
from pipeline.hcl.numbers import format_number, parse_decimal


class ConversionError(Exception):
    """A value cannot be converted; ``path`` says where inside it (``[0].name``)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path

    def at(self, step: str) -> ConversionError:
        return ConversionError(self.message, step + self.path)


# --------------------------------------------------------------------------- type level


def can_convert(src: Type, dst: Type) -> bool:
    """Whether values of type ``src`` can (in general) convert to ``dst``."""
    if src == dst or isinstance(dst, Dynamic) or isinstance(src, Dynamic):
        return True
    if isinstance(src, Primitive) and isinstance(dst, Primitive):
        return dst == STRING or src == STRING
    if isinstance(dst, ObjectType):
        if isinstance(src, ObjectType):
            have = src.attr_types
            return all(
                can_convert(have[name], t) if name in have else name in dst.optional
                for name, t in dst.attrs
            )
        if isinstance(src, MapType):
            return all(can_convert(src.elem, t) for _, t in dst.attrs)
        return False
    if isinstance(dst, TupleType):
        if isinstance(src, TupleType):
            return len(src.elems) == len(dst.elems) and all(
                can_convert(a, b) for a, b in zip(src.elems, dst.elems, strict=True)
            )
        return False
    if isinstance(dst, ListType | SetType):
        if isinstance(src, ListType | SetType):
            return can_convert(src.elem, dst.elem)
        if isinstance(src, TupleType):
            return _structural_elems_convert(src.elems, dst.elem)
        return False
    if isinstance(dst, MapType):
        if isinstance(src, MapType):
            return can_convert(src.elem, dst.elem)
        if isinstance(src, ObjectType):
            return _structural_elems_convert(tuple(t for _, t in src.attrs), dst.elem)
        return False
    return False


def _structural_elems_convert(elems: Sequence[Type], want: Type) -> bool:
    if isinstance(want, Dynamic):
        if not elems:
            return True
        unified = unify(elems)
        if unified is None:
            return False
        return not isinstance(unified, Dynamic) or all(isinstance(e, Dynamic) for e in elems)
    return all(can_convert(e, want) for e in elems)


# --------------------------------------------------------------------------- values


def convert(value: V, want: Type) -> V:
    """``value`` as a value of type ``want``; raises ConversionError."""
    src = value.type
    if src == want or isinstance(want, Dynamic):
        return value
    if value.is_null:
        return null(want)
    if not can_convert(src, want):
        raise ConversionError(mismatch(src, want))
    if isinstance(want, Primitive):
        return _primitive(value, want)
    if isinstance(want, ObjectType):
        return _to_object(value, want)
    if isinstance(want, TupleType):
        return tuple_of(
            _step(v, t, f"[{i}]")
            for i, (v, t) in enumerate(zip(value.items, want.elems, strict=True))
        )
    if isinstance(want, ListType | SetType):
        items = [_step(v, want.elem, f"[{i}]") for i, v in enumerate(value.items)]
        elem = want.elem
        if isinstance(elem, Dynamic):
            items, elem = _unify_values(items, "list" if isinstance(want, ListType) else "set")
        if isinstance(want, ListType):
            return list_of(elem, items)
        return set_of(elem, items)
    assert isinstance(want, MapType)
    attrs = {k: _step(v, want.elem, f'["{k}"]') for k, v in value.attrs.items()}
    elem = want.elem
    if isinstance(elem, Dynamic):
        keys = list(attrs)
        items, elem = _unify_values([attrs[k] for k in keys], "map")
        attrs = dict(zip(keys, items, strict=True))
    return map_of(elem, attrs)


def _step(value: V, want: Type, step: str) -> V:
    try:
        return convert(value, want)
    except ConversionError as exc:
        raise exc.at(step) from None


def _unify_values(items: list[V], kind: str) -> tuple[list[V], Type]:
    """Items of a list(any)/set(any)/map(any): converted to their unified type."""
    if not items:
        return items, DYNAMIC
    unified = unify([v.type for v in items])
    if unified is None:
        raise ConversionError(f"all {kind} elements must have the same type")
    return [convert(v, unified) for v in items], unified


def _primitive(value: V, want: Primitive) -> V:
    src = value.type
    if want == STRING:
        if src == NUMBER:
            return string(format_number(value.number))
        if src == BOOL:
            return string("true" if value.flag else "false")
    elif src == STRING and want == NUMBER:
        parsed = parse_decimal(value.text)
        if parsed is None:
            raise ConversionError("a number is required")
        return V(NUMBER, parsed)
    elif src == STRING and want == BOOL:
        text = value.text
        if text in ("true", "1"):
            return boolean(True)
        if text in ("false", "0"):
            return boolean(False)
        if text.lower() in ("true", "false"):
            raise ConversionError(
                f'a bool is required; to convert from string, use lowercase "{text.lower()}"'
            )
        raise ConversionError("a bool is required")
    raise ConversionError(mismatch(src, want))  # pragma: no cover - can_convert said no


def _to_object(value: V, want: ObjectType) -> V:
    have = value.attrs
    out: dict[str, V] = {}
    for name, attr_type in want.attrs:
        if name in have:
            out[name] = _step(have[name], attr_type, f".{name}")
        elif name in want.optional:
            out[name] = null(attr_type)
        else:
            raise ConversionError(f'attribute "{name}" is required')
    return object_of(out)


def mismatch(got: Type, want: Type) -> str:
    """Why a value of type ``got`` is not one of ``want``, for messages."""
    if isinstance(got, ObjectType) and isinstance(want, ObjectType):
        missing = [n for n, _ in want.attrs if n not in got.attr_types and n not in want.optional]
        if missing:
            return f'attribute "{missing[0]}" is required'
    if (
        isinstance(got, TupleType)
        and isinstance(want, ListType | SetType)
        and isinstance(want.elem, Dynamic)
    ):
        kind = "list" if isinstance(want, ListType) else "set"
        return f"all {kind} elements must have the same type"
    if isinstance(got, ObjectType) and isinstance(want, MapType) and isinstance(want.elem, Dynamic):
        return "all map elements must have the same type"
    return f"{friendly(want)} required, found {friendly(got)}"


# --------------------------------------------------------------------------- unification


def unify(types: Sequence[Type]) -> Type | None:
    """The type every one of ``types`` converts to, or None (cty's UnifyUnsafe)."""
    if not types:
        return None
    kinds = {"map": 0, "list": 0, "set": 0, "object": 0, "tuple": 0, "dynamic": 0}
    for t in types:
        if isinstance(t, MapType):
            kinds["map"] += 1
        elif isinstance(t, ListType):
            kinds["list"] += 1
        elif isinstance(t, SetType):
            kinds["set"] += 1
        elif isinstance(t, ObjectType):
            kinds["object"] += 1
        elif isinstance(t, TupleType):
            kinds["tuple"] += 1
        elif isinstance(t, Dynamic):
            kinds["dynamic"] += 1
    n, dyn = len(types), kinds["dynamic"]
    if kinds["map"] and kinds["map"] + dyn == n:
        return _unify_collections(MapType, types, dyn > 0)
    if kinds["map"] and kinds["map"] + kinds["object"] + dyn == n:
        as_map = _objects_to_map([t for t in types if isinstance(t, ObjectType)])
        if as_map is not None:
            found = unify([as_map if isinstance(t, ObjectType) else t for t in types])
            if isinstance(found, MapType):
                return found
    elif kinds["list"] and kinds["list"] + dyn == n:
        return _unify_collections(ListType, types, dyn > 0)
    elif kinds["list"] and kinds["list"] + kinds["tuple"] + dyn == n:
        as_list = _tuples_to_list([t for t in types if isinstance(t, TupleType)])
        if as_list is not None:
            found = unify([as_list if isinstance(t, TupleType) else t for t in types])
            if isinstance(found, ListType):
                return found
    elif kinds["set"] and kinds["set"] + dyn == n:
        return _unify_collections(SetType, types, dyn > 0)
    elif kinds["object"] and kinds["object"] + dyn == n:
        if dyn:
            return DYNAMIC
        return _unify_objects([t for t in types if isinstance(t, ObjectType)])
    elif kinds["tuple"] and kinds["tuple"] + dyn == n:
        if dyn:
            return DYNAMIC
        return _unify_tuples([t for t in types if isinstance(t, TupleType)])
    elif kinds["object"] and kinds["tuple"]:
        return None
    for want in _preferred(types):
        if all(t == want or can_convert(t, want) for t in types):
            return want
    return None


def _unify_collections(kind: type, types: Sequence[Type], has_dynamic: bool) -> Type | None:
    if has_dynamic:
        return DYNAMIC
    elems = [t.elem for t in types if isinstance(t, ListType | SetType | MapType)]
    elem = unify(elems)
    if elem is None:
        return None
    result: Type = kind(elem)
    return result if all(t == result or can_convert(t, result) for t in types) else None


def _unify_objects(types: list[ObjectType]) -> Type | None:
    names = [n for n, _ in types[0].attrs]
    if any([n for n, _ in t.attrs] != names for t in types[1:]):
        return _objects_to_map(types)
    attrs: dict[str, Type] = {}
    for name in names:
        found = unify([t.attr_types[name] for t in types])
        if found is None:
            return None
        attrs[name] = found
    result = ObjectType.of(attrs)
    if all(t == result or can_convert(t, result) for t in types):
        return result
    return _objects_to_map(types)


def _objects_to_map(types: list[ObjectType]) -> Type | None:
    elem = unify([a for t in types for _, a in t.attrs])
    if elem is None:
        return None
    result = MapType(elem)
    return result if all(can_convert(t, result) for t in types) else None


def _unify_tuples(types: list[TupleType]) -> Type | None:
    width = len(types[0].elems)
    if any(len(t.elems) != width for t in types[1:]):
        return _tuples_to_list(types)
    elems: list[Type] = []
    for i in range(width):
        found = unify([t.elems[i] for t in types])
        if found is None:
            return None
        elems.append(found)
    result = TupleType(tuple(elems))
    if all(t == result or can_convert(t, result) for t in types):
        return result
    return _tuples_to_list(types)


def _tuples_to_list(types: list[TupleType]) -> Type | None:
    elem = unify([e for t in types for e in t.elems])
    if elem is None:
        return None
    result = ListType(elem)
    return result if all(can_convert(t, result) for t in types) else None


def _preferred(types: Sequence[Type]) -> list[Type]:
    """``types`` in cty's order of preference (a topological sort of "converts to")."""
    n = len(types)
    edges: list[list[int]] = [[] for _ in range(n)]
    for i in range(n - 1):
        for j in range(i + 1, n):
            cmp = _compare(types[i], types[j])
            if cmp < 0:
                edges[i].append(j)
            elif cmp > 0:
                edges[j].append(i)
    indegree = [0] * n
    for outs in edges:
        for j in outs:
            indegree[j] += 1
    queue = [i for i in range(n) if indegree[i] == 0]
    order: list[int] = []
    while queue:
        i = queue.pop(0)
        order.append(i)
        for j in edges[i]:
            indegree[j] -= 1
            if indegree[j] == 0:
                queue.append(j)
    return [types[i] for i in order]


def _compare(a: Type, b: Type) -> int:
    """Negative when ``a`` is preferred over ``b`` (cty's compareTypes)."""
    if isinstance(a, Dynamic) or isinstance(b, Dynamic):
        if not isinstance(a, Dynamic):
            return -1
        if not isinstance(b, Dynamic):
            return 1
        return 0
    if isinstance(a, Primitive) and isinstance(b, Primitive):
        if a == STRING or b == STRING:
            if a != STRING:
                return 1
            if b != STRING:
                return -1
        return 0
    for kind in (ListType, SetType, MapType):
        if isinstance(a, kind) and isinstance(b, kind):
            return _compare(a.elem, b.elem)
    swap = 1
    if (
        (isinstance(a, TupleType) and isinstance(b, ListType))
        or (isinstance(a, ObjectType) and isinstance(b, MapType))
        or (isinstance(a, SetType) and isinstance(b, TupleType | ListType))
    ):
        a, b, swap = b, a, -1
    if isinstance(b, SetType) and isinstance(a, TupleType | ListType):
        return -swap
    if isinstance(a, ListType) and isinstance(b, TupleType):
        return -swap
    if isinstance(a, MapType) and isinstance(b, ObjectType):
        return -swap
    pairs: list[tuple[Type, Type]] = []
    if isinstance(a, ObjectType) and isinstance(b, ObjectType):
        atys, btys = a.attr_types, b.attr_types
        if atys.keys() != btys.keys():
            return 0
        pairs = [(atys[k], btys[k]) for k in atys]
    elif isinstance(a, TupleType) and isinstance(b, TupleType):
        if len(a.elems) != len(b.elems):
            return 0
        pairs = list(zip(a.elems, b.elems, strict=True))
    else:
        return 0
    cmps = [_compare(x, y) for x, y in pairs]
    a_super, b_super = any(c < 0 for c in cmps), any(c > 0 for c in cmps)
    if a_super and b_super:
        return 0
    if a_super:
        return -swap
    if b_super:
        return swap
    return 0


def convert_all(values: Sequence[V], want: Type) -> list[V]:
    return [convert(v, want) for v in values]


def unify_values(values: Sequence[V]) -> tuple[list[V], Type] | None:
    """``values`` converted to their unified type, or None when there is none."""
    if not values:
        return [], DYNAMIC
    found = unify([v.type for v in values])
    if found is None:
        return None
    try:
        return [convert(v, found) for v in values], found
    except ConversionError:
        return None
