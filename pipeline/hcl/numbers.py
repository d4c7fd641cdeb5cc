"""HCL numbers: arbitrary-precision binary floating point, as go-cty keeps them. Pure.

A number is a :class:`fractions.Fraction` rounded to a 512-bit mantissa (round half to
even), which is what go-cty's ``big.Float`` values carry when they come from source
text or arithmetic. Integers below 2**512 are exact. Text conversion gives the
shortest decimal that reads back to the same number (Go's ``Text('f', -1)``), so
``1/10`` prints as ``0.1`` and ``11 % 5.1`` keeps its long exact tail.

Infinities are not represented: an operation that would make one (division by zero)
is an error at its location instead (see docs/bake.md, differences from HCL).
"""

from __future__ import annotations

import re
from fractions import Fraction

PRECISION = 512
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_MAX_EXPONENT = 100_000  # decimal exponents beyond this are refused, not computed


def round_number(value: Fraction) -> Fraction:
    """``value`` rounded to PRECISION significant bits, ties to even."""
    num, den = value.numerator, value.denominator
    if num == 0:
        return Fraction(0)
    if den == 1 and abs(num).bit_length() <= PRECISION:
        return value
    sign = -1 if num < 0 else 1
    num = abs(num)
    # 2**(exp-1) <= num/den < 2**exp
    exp = num.bit_length() - den.bit_length()
    if (num << max(0, -exp)) >= (den << max(0, exp)):
        exp += 1
    shift = PRECISION - exp
    if shift >= 0:
        scaled_num, scaled_den = num << shift, den
    else:
        scaled_num, scaled_den = num, den << -shift
    mantissa, rest = divmod(scaled_num, scaled_den)
    twice = 2 * rest
    if twice > scaled_den or (twice == scaled_den and mantissa & 1):
        mantissa += 1
    if shift >= 0:
        return Fraction(sign * mantissa, 1 << shift)
    return Fraction(sign * (mantissa << -shift))


def parse_decimal(text: str) -> Fraction | None:
    """A decimal number (``12``, ``-1.5e3``, ``.5``) as a rounded number; None when
    ``text`` is not one. No whitespace, hex, underscores, ``inf`` or ``nan``."""
    if not _DECIMAL.fullmatch(text):
        return None
    mantissa, _, exponent = text.lower().partition("e")
    if exponent and abs(int(exponent)) > _MAX_EXPONENT:
        return None
    value = Fraction(mantissa) if mantissa not in ("+.", "-.", ".") else Fraction(0)
    if exponent:
        value *= Fraction(10) ** int(exponent)
    return round_number(value)


def format_number(value: Fraction) -> str:
    """The shortest plain decimal (no exponent) that reads back as ``value``."""
    if value.denominator == 1 and abs(value.numerator).bit_length() <= PRECISION:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    # p: the power of ten of the first significant digit (10**p <= magnitude)
    p = len(str(magnitude.numerator // magnitude.denominator)) - 1
    if magnitude < 1:
        p = -1
        while magnitude * Fraction(10) ** (-p) < 1:
            p -= 1
    for sig in range(1, 170):
        decimals = sig - 1 - p
        scale = Fraction(10) ** decimals
        rounded = round(magnitude * scale)  # ties to even; the round trip decides
        if round_number(Fraction(rounded) / scale) == magnitude:
            return sign + _plain(rounded, decimals)
    raise AssertionError(f"no decimal reads back as {value}")  # pragma: no cover


def _plain(digits: int, decimals: int) -> str:
    """``digits * 10**-decimals`` written out without an exponent."""
    if decimals <= 0:
        return str(digits * 10**-decimals)
    text = str(digits).rjust(decimals + 1, "0")
    whole, frac = text[:-decimals], text[-decimals:].rstrip("0")
    return f"{whole}.{frac}" if frac else whole


def is_integer(value: Fraction) -> bool:
    return value.denominator == 1


def modulo(a: Fraction, b: Fraction) -> Fraction:
    """go-cty's remainder: ``a - b * trunc(a / b)`` in 512-bit steps; ``a % 0`` is ``a``."""
    if b == 0:
        return a
    whole = int(round_number(a / b))  # truncates toward zero, as big.Float.Int does
    return round_number(a - round_number(b * whole))


# --------------------------------------------------------------------------- decimal digits
# A decimal is (digits, exp): value = 0.DIGITS * 10**exp, digits without leading or
# trailing zeros ("" for zero), as Go's big.Float formatting works with them.


def exact_digits(value: Fraction) -> tuple[str, int]:
    """The exact decimal digits of |value| (a rounded number: its denominator is a
    power of two, so the expansion is finite)."""
    magnitude = abs(value)
    if magnitude == 0:
        return "", 0
    num, den = magnitude.numerator, magnitude.denominator
    k = den.bit_length() - 1  # den == 2**k
    assert den == 1 << k, "not a binary fraction"
    digits = str(num * 5**k)
    exp = len(digits) - k
    stripped = digits.rstrip("0")
    return stripped, exp


def shortest_digits(value: Fraction) -> tuple[str, int]:
    """The fewest digits that read back as ``value`` (Go's precision -1)."""
    text = format_number(abs(value))
    whole, _, frac = text.partition(".")
    digits = (whole + frac).lstrip("0")
    lead = len(whole) if whole != "0" else -(len(frac) - len(frac.lstrip("0")))
    if not digits:
        return "", 0
    return digits.rstrip("0"), lead


def round_digits(digits: str, exp: int, n: int) -> tuple[str, int]:
    """``digits`` rounded to at most ``n`` digits, half to even; trailing zeros trimmed."""
    if n < 0 or len(digits) <= n:
        return digits, exp
    if n == 0:
        # 0.DIGITS rounds to 0 or to 1 at this exponent
        first = digits[0]
        up = first > "5" or (first == "5" and digits[1:].strip("0") != "")
        return ("1", exp + 1) if up else ("", 0)
    keep, rest = digits[:n], digits[n:]
    tie_or_more = rest[1:].strip("0") != "" or int(keep[-1]) % 2 == 1
    up = rest[0] > "5" or (rest[0] == "5" and tie_or_more)
    if up:
        bumped = str(int(keep) + 1)
        if len(bumped) > len(keep):
            exp += 1
        keep = bumped
    keep = keep.rstrip("0")
    return (keep, exp) if keep else ("", 0)
