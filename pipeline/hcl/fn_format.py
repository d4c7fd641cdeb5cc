"""``format`` and ``formatlist`` with every go-cty verb, flag, width and precision. Pure.

A verb is ``%[flags][width][.precision][[argindex]]verb``. ``%v`` prints strings and
numbers as themselves (numbers in Go's shortest ``%g`` form) and anything else as
JSON (``%#v`` always JSON); ``%t`` bools; ``%b %d %o %x %X`` whole numbers; ``%e %E
%f %g %G`` numbers with Go's ``big.Float`` rules (default precision 6, shortest for
``%g``); ``%s`` strings (precision cuts grapheme clusters) and ``%q`` JSON-quoted
strings. Widths count grapheme clusters; ``-`` pads on the right, ``0`` with zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.hcl import cty, graphemes
from pipeline.hcl.convert import ConversionError, convert
from pipeline.hcl.cty import BOOL, DYNAMIC, NUMBER, STRING, V
from pipeline.hcl.fn_encoding import json_text, quote_json_string
from pipeline.hcl.fnbase import ArgError, FunctionError, Param, fn, text
from pipeline.hcl.numbers import exact_digits, round_digits, shortest_digits


@dataclass
class Verb:
    raw: str
    offset: int
    arg: int  # 1-based
    mode: str = ""
    zero: bool = False
    sharp: bool = False
    plus: bool = False
    minus: bool = False
    space: bool = False
    width: int = -1
    prec: int = -1


def format_text(fmt: str, args: list[V]) -> str:
    """The formatted text; FunctionError for a bad format or an unsuitable argument."""
    out: list[str] = []
    i, n, next_arg, highest = 0, len(fmt), 1, 0
    while i < n:
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        if fmt.startswith("%%", i):
            out.append("%")
            i += 2
            continue
        start = i
        verb = Verb("", start, next_arg)
        i += 1
        while i < n and fmt[i] in "0#-+ ":
            setattr(
                verb,
                {"0": "zero", "#": "sharp", "-": "minus", "+": "plus", " ": "space"}[fmt[i]],
                True,
            )
            i += 1
        if i < n and fmt[i] in "123456789":
            j = i
            while j < n and fmt[j].isdigit():
                j += 1
            verb.width = int(fmt[i:j])
            i = j
        if i < n and fmt[i] == ".":
            j = i + 1
            while j < n and fmt[j].isdigit():
                j += 1
            verb.prec = int(fmt[i + 1 : j] or "0")
            i = j
        if i < n and fmt[i] == "[":
            j = i + 1
            while j < n and fmt[j].isdigit():
                j += 1
            if j == i + 1 or j >= n or fmt[j] != "]" or fmt[i + 1] == "0":
                raise FunctionError(f"invalid format string starting at offset {start}")
            verb.arg = int(fmt[i + 1 : j])
            i = j + 1
        if i >= n:
            raise FunctionError(f"invalid format string starting at offset {start}")
        if not fmt[i].isascii() or not fmt[i].isalpha():
            raise FunctionError(f"unrecognized format character {fmt[i]!r} at offset {i}")
        verb.mode = fmt[i]
        i += 1
        verb.raw = fmt[start:i]
        highest = max(highest, verb.arg)
        out.append(_one(verb, args, fmt))
        next_arg = verb.arg + 1
    if highest < len(args):
        if highest == 0:
            raise FunctionError(f"too many arguments for the format {cty.show(text(fmt))}")
        raise FunctionError(
            f"too many arguments for the format {cty.show(text(fmt))}: it uses {highest}"
        )
    return "".join(out)


def _one(verb: Verb, args: list[V], fmt: str) -> str:
    if verb.arg > len(args):
        raise FunctionError(f"not enough arguments for the format {cty.show(text(fmt))}")
    arg = args[verb.arg - 1]
    if verb.mode != "v" and arg.is_null:
        raise FunctionError(f'unsupported value for "{verb.raw}" at {verb.offset}: null')
    mode = verb.mode
    if mode == "v":
        if not verb.sharp and arg.type == STRING and not arg.is_null:
            return _pad(verb, arg.text)
        if not verb.sharp and arg.type == NUMBER and not arg.is_null:
            return _pad(verb, _float_text(arg.number, "g", -1))
        return _pad(verb, json_text(arg))
    if mode == "t":
        return "true" if _convert(verb, arg, BOOL).flag else "false"
    if mode in "bdoxX":
        value = _convert(verb, arg, NUMBER).number
        if value.denominator != 1:
            raise ArgError(verb.arg, f"must be a whole number, found {cty.show(arg)}")
        return _int_format(verb, value.numerator)
    if mode in "eEfgG":
        value = _convert(verb, arg, NUMBER).number
        return _float_format(verb, value)
    if mode in "sq":
        s = _convert(verb, arg, STRING).text
        if verb.prec > 0:
            s = "".join(graphemes.clusters(s)[: verb.prec])
        return _pad(verb, s if mode == "s" else quote_json_string(s))
    raise FunctionError(
        f"unsupported verb %{mode} (use %v %t %b %d %o %x %X %e %E %f %g %G %s %q or %%)"
    )


def _convert(verb: Verb, arg: V, want: cty.Type) -> V:
    try:
        return convert(arg, want)
    except ConversionError:
        kind = {"number": "a number", "bool": "a bool", "string": "a string"}[str(want)]
        if want == NUMBER and verb.mode in "bdoxX":
            kind = "a whole number"
        shown = "a list" if isinstance(arg.type, cty.TupleType) else cty.describe(arg)
        raise ArgError(verb.arg, f"must be {kind}, found {shown}") from None


def _pad(verb: Verb, s: str) -> str:
    if verb.width < 0:
        return s
    missing = verb.width - graphemes.count(s)
    if missing <= 0:
        return s
    pad = ("0" if verb.zero else " ") * missing
    return s + pad if verb.minus else pad + s


def _int_format(verb: Verb, value: int) -> str:
    base = {"b": 2, "o": 8, "d": 10, "x": 16, "X": 16}[verb.mode]
    digits = _to_base(abs(value), base)
    if verb.mode == "X":
        digits = digits.upper()
    sign = "-" if value < 0 else "+" if verb.plus else " " if verb.space else ""
    prefix = ""
    if verb.sharp:
        prefix = {"b": "0b", "o": "0", "x": "0x", "X": "0X"}.get(verb.mode, "")
    zeros = 0
    if verb.prec >= 0:
        if len(digits) < verb.prec:
            zeros = verb.prec - len(digits)
        elif digits == "0" and verb.prec == 0:
            return ""
    left = right = 0
    length = len(sign) + len(prefix) + zeros + len(digits)
    if verb.width > length:
        extra = verb.width - length
        if verb.minus:
            right = extra
        elif verb.zero and verb.prec < 0:
            zeros = extra
        else:
            left = extra
    return " " * left + sign + prefix + "0" * zeros + digits + " " * right


def _to_base(value: int, base: int) -> str:
    if base == 10:
        return str(value)
    if base == 16:
        return format(value, "x")
    if base == 8:
        return format(value, "o")
    return format(value, "b")


def _float_format(verb: Verb, value: object) -> str:
    from fractions import Fraction

    assert isinstance(value, Fraction)
    mode = verb.mode
    prec = verb.prec
    if prec < 0:
        prec = -1 if mode in "gG" else 6
    body = _float_text(value, mode, prec)
    sign = ""
    if body.startswith("-"):
        sign, body = "-", body[1:]
    elif verb.plus:
        sign = "+"
    elif verb.space:
        sign = " "
    padding = max(0, verb.width - len(sign) - len(body))
    if verb.zero:
        return sign + "0" * padding + body
    if verb.minus:
        return sign + body + " " * padding
    return " " * padding + sign + body


def _float_text(value: object, mode: str, prec: int) -> str:
    """Go's ``big.Float.Text(mode, prec)`` for a finite rounded number."""
    from fractions import Fraction

    assert isinstance(value, Fraction)
    neg = value < 0
    shortest = prec < 0
    if shortest:
        digits, exp = shortest_digits(value)
        if mode in "eE":
            prec = len(digits) - 1
        elif mode == "f":
            prec = max(len(digits) - exp, 0)
        else:
            prec = len(digits)
    else:
        digits, exp = exact_digits(value)
        if mode in "eE":
            digits, exp = round_digits(digits, exp, 1 + prec)
        elif mode == "f":
            digits, exp = round_digits(digits, exp, exp + prec)
        else:
            if prec == 0:
                prec = 1
            digits, exp = round_digits(digits, exp, prec)
    sign = "-" if neg else ""
    if mode in "eE":
        return sign + _fmt_e(mode, prec, digits, exp)
    if mode == "f":
        return sign + _fmt_f(prec, digits, exp)
    eprec = prec
    if eprec > len(digits) and len(digits) >= exp:
        eprec = len(digits)
    if shortest:
        eprec = 6
    if exp - 1 < -4 or exp - 1 >= eprec:
        if prec > len(digits):
            prec = len(digits)
        return sign + _fmt_e("e" if mode == "g" else "E", prec - 1, digits, exp)
    if prec > exp:
        prec = len(digits)
    return sign + _fmt_f(max(prec - exp, 0), digits, exp)


def _fmt_e(mode: str, prec: int, digits: str, exp: int) -> str:
    out = digits[0] if digits else "0"
    if prec > 0:
        frac = digits[1 : prec + 1]
        out += "." + frac + "0" * (prec - len(frac))
    e = exp - 1 if digits else 0
    sign = "-" if e < 0 else "+"
    return f"{out}{mode}{sign}{abs(e):02d}"


def _fmt_f(prec: int, digits: str, exp: int) -> str:
    whole = digits[:exp] + "0" * max(0, exp - len(digits)) if exp > 0 else "0"
    if prec <= 0:
        return whole

    def at(i: int) -> str:
        return digits[i] if 0 <= i < len(digits) else "0"

    return whole + "." + "".join(at(exp + i) for i in range(prec))


FORMAT = Param("format", STRING)
ARGS = Param("args", DYNAMIC, allow_null=True)


@fn("format", FORMAT, var=ARGS)
def _fn_format(fmt: V, *args: V) -> V:
    return text(format_text(fmt.text, list(args)))


@fn("formatlist", FORMAT, var=ARGS)
def _fn_formatlist(fmt: V, *args: V) -> V:
    length = -1
    chooser = -1
    for i, arg in enumerate(args):
        if not arg.is_null and cty.is_sequence(arg.type):
            n = len(arg.items)
            if length == -1:
                length, chooser = n, i
            elif n != length:
                raise ArgError(
                    i + 1,
                    f"has length {n}, which is inconsistent with argument {chooser + 2} "
                    f"of length {length}",
                )
    if length == 0:
        return cty.list_of(STRING, ())
    rows = max(length, 1)
    out: list[V] = []
    for row in range(rows):
        current = [a.items[row] if not a.is_null and cty.is_sequence(a.type) else a for a in args]
        try:
            out.append(text(format_text(fmt.text, current)))
        except FunctionError as exc:
            raise FunctionError(f"error on format iteration {row}: {exc}") from None
    return cty.list_of(STRING, out)
