"""Number functions (go-cty's number family). Pure.

Arithmetic keeps 512-bit precision (:mod:`pipeline.hcl.numbers`). ``log`` and ``pow``
compute in float64 as go-cty does and keep the shortest decimal of the result.
``divide`` by zero is an error here (go-cty gives an infinity; see docs/bake.md).
"""

from __future__ import annotations

import math
from fractions import Fraction

from pipeline.hcl import cty
from pipeline.hcl.cty import BOOL, NUMBER, STRING, V
from pipeline.hcl.fnbase import ArgError, FunctionError, Param, fn, num, whole
from pipeline.hcl.numbers import modulo, parse_decimal, round_number

A, B = Param("a", NUMBER), Param("b", NUMBER)
N = Param("num", NUMBER)


def _v(value: Fraction) -> V:
    return cty.V(NUMBER, round_number(value))


@fn("absolute", N)
def _fn_absolute(n: V) -> V:
    return _v(abs(n.number))


@fn("add", A, B)
def _fn_add(a: V, b: V) -> V:
    return _v(a.number + b.number)


@fn("subtract", A, B)
def _fn_subtract(a: V, b: V) -> V:
    return _v(a.number - b.number)


@fn("multiply", A, B)
def _fn_multiply(a: V, b: V) -> V:
    return _v(a.number * b.number)


@fn("divide", A, B)
def _fn_divide(a: V, b: V) -> V:
    if b.number == 0:
        raise FunctionError("division by zero")
    return _v(a.number / b.number)


@fn("modulo", A, B)
def _fn_modulo(a: V, b: V) -> V:
    return cty.V(NUMBER, modulo(a.number, b.number))


@fn("greaterthan", A, B)
def _fn_gt(a: V, b: V) -> V:
    return cty.boolean(a.number > b.number)


@fn("greaterthanorequalto", A, B)
def _fn_ge(a: V, b: V) -> V:
    return cty.boolean(a.number >= b.number)


@fn("lessthan", A, B)
def _fn_lt(a: V, b: V) -> V:
    return cty.boolean(a.number < b.number)


@fn("lessthanorequalto", A, B)
def _fn_le(a: V, b: V) -> V:
    return cty.boolean(a.number <= b.number)


@fn("negate", N)
def _fn_negate(n: V) -> V:
    return _v(-n.number)


@fn("min", var=Param("numbers", NUMBER))
def _fn_min(*numbers: V) -> V:
    if not numbers:
        raise FunctionError("must pass at least one number")
    return min(numbers, key=lambda v: v.number)


@fn("max", var=Param("numbers", NUMBER))
def _fn_max(*numbers: V) -> V:
    if not numbers:
        raise FunctionError("must pass at least one number")
    return max(numbers, key=lambda v: v.number)


@fn("int", N)
def _fn_int(n: V) -> V:
    return _v(Fraction(math.trunc(n.number)))


@fn("ceil", N)
def _fn_ceil(n: V) -> V:
    return _v(Fraction(math.ceil(n.number)))


@fn("floor", N)
def _fn_floor(n: V) -> V:
    return _v(Fraction(math.floor(n.number)))


def _from_float(value: float) -> V:
    if math.isnan(value) or math.isinf(value):
        raise FunctionError("the result is not a finite number")
    parsed = parse_decimal(repr(value))
    return _v(parsed if parsed is not None else Fraction(value))


@fn("log", N, Param("base", NUMBER))
def _fn_log(n: V, base: V) -> V:
    try:
        return _from_float(math.log(float(n.number)) / math.log(float(base.number)))
    except (ValueError, ZeroDivisionError):
        raise FunctionError("the result is not a finite number") from None


@fn("pow", N, Param("power", NUMBER))
def _fn_pow(n: V, power: V) -> V:
    try:
        return _from_float(math.pow(float(n.number), float(power.number)))
    except (ValueError, OverflowError, ZeroDivisionError):
        raise FunctionError("the result is not a finite number") from None


@fn("signum", N)
def _fn_signum(n: V) -> V:
    value = whole(n, 0)
    return num((value > 0) - (value < 0))


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@fn("parseint", Param("number", cty.DYNAMIC), Param("base", NUMBER))
def _fn_parseint(number: V, base_v: V) -> V:
    if number.type != STRING:
        raise ArgError(0, f"must be a string, not {cty.friendly(number.type)}")
    base = whole(base_v, 1)
    if not 2 <= base <= 62:
        raise ArgError(1, "must be a whole number between 2 and 62 inclusive")
    raw = number.text
    digits = raw[1:] if raw[:1] in "+-" else raw
    value = 0
    ok = bool(digits)
    for c in digits:
        d = _DIGITS.find(c.lower() if base <= 36 else c)
        if d < 0 or d >= base:
            ok = False
            break
        value = value * base + d
    if not ok:
        raise ArgError(0, f'cannot be parsed: "{raw}" is not a base {base} integer')
    return num(-value if raw.startswith("-") else value)


__all__ = ["BOOL"]
