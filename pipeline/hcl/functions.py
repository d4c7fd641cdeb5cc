"""The HCL function library (a subset of go-cty's stdlib and bake's additions). Pure.

Each function is registered in :data:`FUNCTIONS` with its arity; implementations take
and return plain values and raise :class:`FunctionError`, which the evaluator turns into
a located message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pipeline.errors import did_you_mean
from pipeline.hcl.values import BlockRef, Value, describe, equal, integral, parse_number, to_string

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
        if not any(equal(item, seen) for seen in out):
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
    return any(equal(item, value) for item in _arg_list(lst, 1))


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
        start: int | float
        step: int | float
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
        out.append(integral(value))
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
