"""Collection and set functions (go-cty's collection, sequence and set families, and
bake's ``indexof``). Pure.

Result types follow go-cty: ``keys``/``values`` of an object are tuples and of a map
lists; ``concat`` of lists is a list and of anything else a tuple; ``flatten`` and
``slice`` of a tuple are tuples; set functions return sets, unifying element types.
"""

from __future__ import annotations

from pipeline.hcl import cty
from pipeline.hcl.convert import ConversionError, convert, unify
from pipeline.hcl.cty import DYNAMIC, NUMBER, STRING, V, equals
from pipeline.hcl.fnbase import (
    STRINGS,
    ArgError,
    FunctionError,
    Param,
    fn,
    num,
    what,
    whole,
)

ANY = Param("collection", DYNAMIC)
LIST_ANY = cty.ListType(DYNAMIC)
SET_ANY = cty.SetType(DYNAMIC)


def _seq(value: V, index: int, what_: str = "list, tuple or set") -> tuple[V, ...]:
    if not cty.is_sequence(value.type):
        raise ArgError(index, f"must be a {what_}, found {what(value)}")
    return value.items


def _same_kind(value: V, items: list[V]) -> V:
    """``items`` as a list of ``value``'s element type, or a tuple for a tuple."""
    if isinstance(value.type, cty.TupleType):
        return cty.tuple_of(items)
    return cty.list_of(value.type.elem, items)  # type: ignore[attr-defined]


def _has_index(coll: V, key: V) -> bool:
    t = coll.type
    if isinstance(t, cty.ListType | cty.TupleType):
        try:
            n = convert(key, NUMBER).number
        except ConversionError:
            return False
        return n.denominator == 1 and 0 <= n.numerator < len(coll.items)
    if isinstance(t, cty.MapType | cty.ObjectType):
        try:
            return convert(key, STRING).text in coll.attrs
        except ConversionError:
            return False
    raise ArgError(0, f"must be a list, a map or a tuple, found {what(coll)}")


@fn("hasindex", ANY, Param("key", DYNAMIC))
def _fn_hasindex(coll: V, key: V) -> V:
    return cty.boolean(_has_index(coll, key))


@fn("index", ANY, Param("key", DYNAMIC))
def _fn_index(coll: V, key: V) -> V:
    if not _has_index(coll, key):
        raise FunctionError("invalid index")
    if isinstance(coll.type, cty.ListType | cty.TupleType):
        return coll.items[convert(key, NUMBER).number.numerator]
    return coll.attrs[convert(key, STRING).text]


@fn("length", ANY)
def _fn_length(coll: V) -> V:
    if coll.type == STRING:  # a pipeline extension: go-cty's length takes collections only
        from pipeline.hcl import graphemes

        return num(graphemes.count(coll.text))
    kinds = cty.ListType | cty.SetType | cty.MapType | cty.TupleType | cty.ObjectType
    if not isinstance(coll.type, kinds):
        raise ArgError(0, f"must be a list, a map or a tuple, found {what(coll)}")
    return num(cty.length(coll))


@fn("element", Param("list", DYNAMIC), Param("index", NUMBER))
def _fn_element(lst: V, index: V) -> V:
    if not isinstance(lst.type, cty.ListType | cty.TupleType):
        raise ArgError(0, f"must be a list or tuple, found {what(lst)}")
    items = lst.items
    if not items:
        raise FunctionError("the list is empty")
    return items[whole(index, 1) % len(items)]


@fn("coalescelist", var=Param("vals", DYNAMIC, allow_null=True))
def _fn_coalescelist(*lists: V) -> V:
    if not lists:
        raise FunctionError("at least one argument is required")
    for i, lst in enumerate(lists):
        if not lst.is_null and not isinstance(lst.type, cty.ListType | cty.TupleType):
            raise ArgError(i, "must be a list or tuple")
    for lst in lists:
        if not lst.is_null and lst.items:
            return lst
    raise FunctionError("no non-null arguments")


@fn("compact", Param("list", STRINGS))
def _fn_compact(lst: V) -> V:
    return cty.list_of(STRING, [v for v in lst.items if not v.is_null and v.text != ""])


@fn("contains", Param("list", DYNAMIC), Param("value", DYNAMIC, allow_null=True))
def _fn_contains(lst: V, value: V) -> V:
    items = _seq(lst, 0)
    return cty.boolean(any(equals(value, item) for item in items))


@fn("distinct", Param("list", LIST_ANY))
def _fn_distinct(lst: V) -> V:
    out: list[V] = []
    for item in lst.items:
        if not any(equals(item, seen) for seen in out):
            out.append(item)
    return cty.list_of(lst.type.elem, out)  # type: ignore[attr-defined]


@fn("chunklist", Param("list", LIST_ANY), Param("size", NUMBER))
def _fn_chunklist(lst: V, size_v: V) -> V:
    size = whole(size_v, 1)
    if size < 0:
        raise ArgError(1, "must not be negative")
    items, t = lst.items, lst.type
    if not items:
        return cty.list_of(t, ())
    if size == 0:
        return cty.list_of(t, (lst,))
    chunks = [cty.list_of(t.elem, items[i : i + size]) for i in range(0, len(items), size)]  # type: ignore[attr-defined]
    return cty.list_of(t, chunks)


def _flatten(value: V) -> list[V]:
    out: list[V] = []
    for item in value.items:
        if not item.is_null and cty.is_sequence(item.type):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


@fn("flatten", Param("list", DYNAMIC))
def _fn_flatten(lst: V) -> V:
    _seq(lst, 0, "list, set or tuple")
    return cty.tuple_of(_flatten(lst))


@fn("keys", Param("inputMap", DYNAMIC))
def _fn_keys(m: V) -> V:
    if isinstance(m.type, cty.ObjectType):
        return cty.tuple_of(cty.string(k) for k in m.attrs)
    if isinstance(m.type, cty.MapType):
        return cty.list_of(STRING, [cty.string(k) for k in m.attrs])
    raise ArgError(0, f"must be a map or an object, found {what(m)}")


@fn("values", Param("mapping", DYNAMIC))
def _fn_values(m: V) -> V:
    if isinstance(m.type, cty.ObjectType):
        return cty.tuple_of(m.attrs.values())
    if isinstance(m.type, cty.MapType):
        return cty.list_of(m.type.elem, list(m.attrs.values()))
    raise ArgError(0, f"must be a map or an object, found {what(m)}")


@fn(
    "lookup",
    Param("inputMap", DYNAMIC),
    Param("key", STRING),
    var=Param("default", DYNAMIC, allow_null=True),
)
def _fn_lookup(m: V, key: V, *default: V) -> V:
    if len(default) > 1:
        raise FunctionError(f"expected 2 or 3 arguments, got {2 + len(default)}")
    name = key.text
    if isinstance(m.type, cty.ObjectType):
        if name in m.attrs:
            return m.attrs[name]
        if default:
            return default[0]
        raise _missing(name, list(m.attrs))
    if isinstance(m.type, cty.MapType):
        if default:
            try:
                fallback = convert(default[0], m.type.elem)
            except ConversionError:
                raise ArgError(2, "must have the same type as the map elements") from None
        if name in m.attrs:
            return m.attrs[name]
        if default:
            return fallback
        raise _missing(name, list(m.attrs))
    raise ArgError(0, f"must be a map or an object, found {what(m)}")


def _missing(name: str, keys: list[str]) -> FunctionError:
    from pipeline.errors import did_you_mean

    hint = did_you_mean(name, keys)
    more = f' (did you mean "{hint}"?)' if hint else ""
    return FunctionError(f'no key "{name}" and no default given{more}')


@fn("merge", var=Param("maps", DYNAMIC, allow_null=True))
def _fn_merge(*maps: V) -> V:
    if not maps:
        return cty.object_of({})
    types = []
    for i, m in enumerate(maps):
        if not isinstance(m.type, cty.MapType | cty.ObjectType | cty.Dynamic):
            raise ArgError(i, f"must be a map or an object, found {what(m)}")
        types.append(m.type)
    out: dict[str, V] = {}
    for m in maps:
        if not m.is_null:
            out.update(m.attrs)
    first = types[0]
    if all(t == first for t in types) and isinstance(first, cty.MapType):
        return cty.map_of(first.elem, out)
    return cty.object_of(out)


@fn("reverselist", Param("list", DYNAMIC))
def _fn_reverselist(lst: V) -> V:
    if isinstance(lst.type, cty.TupleType):
        return cty.tuple_of(reversed(lst.items))
    if isinstance(lst.type, cty.ListType | cty.SetType):
        return cty.list_of(lst.type.elem, list(reversed(lst.items)))
    raise ArgError(0, f"can only reverse list or tuple values, not {what(lst)}")


@fn("setproduct", var=Param("sets", DYNAMIC))
def _fn_setproduct(*sets: V) -> V:
    if len(sets) < 2:
        raise FunctionError("at least two arguments are required")
    elem_types: list[cty.Type] = []
    lists = 0
    for i, s in enumerate(sets):
        t = s.type
        if isinstance(t, cty.SetType):
            elem_types.append(t.elem)
        elif isinstance(t, cty.ListType):
            elem_types.append(t.elem)
            lists += 1
        elif isinstance(t, cty.TupleType):
            found = unify(t.elems) if t.elems else DYNAMIC
            if found is None:
                raise ArgError(i, "must have elements of one type")
            elem_types.append(found)
            lists += 1
        else:
            raise ArgError(i, "must be a set or a list")
    tuple_type = cty.TupleType(tuple(elem_types))
    combos: list[list[V]] = [[]]
    for s, et in zip(sets, elem_types, strict=True):
        combos = [[*c, convert(v, et)] for c in combos for v in s.items]
    rows = [cty.V(tuple_type, tuple(c)) for c in combos] if all(s.items for s in sets) else []
    if lists == len(sets):
        return cty.list_of(tuple_type, rows)
    return cty.set_of(tuple_type, rows)


@fn("slice", Param("list", DYNAMIC), Param("start_index", NUMBER), Param("end_index", NUMBER))
def _fn_slice(lst: V, start_v: V, end_v: V) -> V:
    if isinstance(lst.type, cty.SetType):
        raise ArgError(0, "cannot slice a set, because its elements do not have indices")
    if not isinstance(lst.type, cty.ListType | cty.TupleType):
        raise ArgError(0, f"must be a list or tuple, found {what(lst)}")
    n = len(lst.items)
    start, end = whole(start_v, 1), whole(end_v, 2)
    if start < 0:
        raise ArgError(1, "must not be less than zero")
    if start > n:
        raise ArgError(1, "must not be greater than the length of the list")
    if end < 0:
        raise ArgError(2, "must not be less than zero")
    if end > n:
        raise ArgError(2, "must not be greater than the length of the list")
    if start > end:
        raise ArgError(1, "must not be greater than the end index")
    return _same_kind(lst, list(lst.items[start:end]))


@fn("zipmap", Param("keys", STRINGS), Param("values", DYNAMIC))
def _fn_zipmap(keys: V, values: V) -> V:
    if not isinstance(values.type, cty.ListType | cty.TupleType):
        raise ArgError(1, f"must be a list or tuple, found {what(values)}")
    if len(keys.items) != len(values.items):
        raise FunctionError(
            f"number of keys ({len(keys.items)}) does not match number of values "
            f"({len(values.items)})"
        )
    out: dict[str, V] = {}
    for i, (k, v) in enumerate(zip(keys.items, values.items, strict=True)):
        if k.is_null:
            raise ArgError(0, f"has a null value at index {i}")
        out[k.text] = v
    if isinstance(values.type, cty.ListType):
        return cty.map_of(values.type.elem, out)
    return cty.object_of(out)


@fn("concat", var=Param("seqs", DYNAMIC))
def _fn_concat(*seqs: V) -> V:
    if not seqs:
        raise FunctionError("at least one argument is required")
    if all(isinstance(s.type, cty.ListType) for s in seqs):
        common = unify([s.type for s in seqs])
        if isinstance(common, cty.ListType):
            items = [v for s in seqs for v in convert(s, common).items]
            return cty.list_of(common.elem, items)
    out: list[V] = []
    for i, s in enumerate(seqs):
        if not isinstance(s.type, cty.ListType | cty.TupleType):
            raise ArgError(i, f"must be a list or tuple, found {what(s)}")
        out.extend(s.items)
    return cty.tuple_of(out)


@fn("range", var=Param("params", NUMBER))
def _fn_range(*args: V) -> V:
    one, minus = cty.number(1).number, cty.number(-1).number
    values = [a.number for a in args]
    if len(values) == 1:
        start, end, step = cty.number(0).number, values[0], minus if values[0] < 0 else one
    elif len(values) == 2:
        start, end = values
        step = minus if end < start else one
    elif len(values) == 3:
        start, end, step = values
    else:
        raise FunctionError("expected one, two or three arguments")
    if step == 0:
        raise ArgError(2, "must not be zero")
    down = step < 0
    if down and end > start:
        raise ArgError(1, "must be less than start when step is negative")
    if not down and end < start:
        raise ArgError(1, "must be greater than start when step is positive")
    out: list[V] = []
    current = start
    while (current > end) if down else (current < end):
        if len(out) >= 1024:
            raise FunctionError("more than 1024 values were generated")
        out.append(cty.number(current))
        current = current + step
    return cty.list_of(NUMBER, out)


def _set_type(sets: tuple[V, ...]) -> cty.Type:
    elems = [
        s.type.elem  # type: ignore[attr-defined]
        for s in sets
        if not (s.items == () and isinstance(s.type.elem, cty.Dynamic))  # type: ignore[attr-defined]
    ]
    if not elems:
        return SET_ANY
    found = unify(elems)
    if found is None:
        raise FunctionError("the sets must all have compatible element types")
    return cty.SetType(found)


def _set_op(sets: tuple[V, ...], op: str) -> V:
    t = _set_type(sets)
    converted = [convert(s, t) for s in sets]
    result = list(converted[0].items)
    for s in converted[1:]:
        other = s.items
        if op == "union":
            result += [v for v in other if not any(equals(v, r) for r in result)]
        elif op == "intersection":
            result = [r for r in result if any(equals(r, v) for v in other)]
        elif op == "subtract":
            result = [r for r in result if not any(equals(r, v) for v in other)]
        else:
            left = [r for r in result if not any(equals(r, v) for v in other)]
            right = [v for v in other if not any(equals(v, r) for r in result)]
            result = left + right
    return cty.set_of(t.elem, result)  # type: ignore[attr-defined]


SET1 = Param("first_set", SET_ANY)
SETS = Param("other_sets", SET_ANY)


@fn("sethaselement", Param("set", SET_ANY), Param("elem", DYNAMIC))
def _fn_sethaselement(s: V, elem: V) -> V:
    return cty.boolean(any(equals(elem, v) for v in s.items))


@fn("setunion", SET1, var=SETS)
def _fn_setunion(*sets: V) -> V:
    return _set_op(sets, "union")


@fn("setintersection", SET1, var=SETS)
def _fn_setintersection(*sets: V) -> V:
    return _set_op(sets, "intersection")


@fn("setsubtract", Param("a", SET_ANY), Param("b", SET_ANY))
def _fn_setsubtract(a: V, b: V) -> V:
    return _set_op((a, b), "subtract")


@fn("setsymmetricdifference", SET1, var=SETS)
def _fn_setsymmetricdifference(*sets: V) -> V:
    return _set_op(sets, "symmetric")


@fn("indexof", Param("list", DYNAMIC), Param("value", DYNAMIC))
def _fn_indexof(lst: V, value: V) -> V:
    if not isinstance(lst.type, cty.ListType | cty.TupleType):
        raise ArgError(0, "must be a list or tuple")
    if not lst.items:
        raise FunctionError("cannot search an empty list")
    for i, item in enumerate(lst.items):
        if equals(item, value):
            return num(i)
    raise FunctionError("item not found")
