"""Logic, equality, conversions, bytes, CIDR and semver functions. Pure.

``semvercmp(version, constraint)`` follows Masterminds/semver v3 (the library bake
uses): ``,`` or spaces AND conditions, ``||`` ORs them; operators ``= != > < >= <=
~ ~> ^``, ``x``/``*`` wildcards, ``A - B`` ranges; a prerelease version only matches
a condition that names a prerelease.
"""

from __future__ import annotations

import ipaddress
import re

from pipeline.hcl import cty
from pipeline.hcl.convert import ConversionError, can_convert, convert, mismatch
from pipeline.hcl.cty import BOOL, DYNAMIC, NUMBER, STRING, Capsule, V, equals
from pipeline.hcl.fnbase import (
    STRINGS,
    ArgError,
    FunctionError,
    Param,
    fn,
    text,
    what,
    whole,
)

B1, B2 = Param("a", BOOL), Param("b", BOOL)
ANY_A = Param("a", DYNAMIC, allow_null=True)
ANY_B = Param("b", DYNAMIC, allow_null=True)


@fn("and", B1, B2)
def _fn_and(a: V, b: V) -> V:
    return cty.boolean(a.flag and b.flag)


@fn("or", B1, B2)
def _fn_or(a: V, b: V) -> V:
    return cty.boolean(a.flag or b.flag)


@fn("not", Param("val", BOOL))
def _fn_not(a: V) -> V:
    return cty.boolean(not a.flag)


@fn("equal", ANY_A, ANY_B)
def _fn_equal(a: V, b: V) -> V:
    return cty.boolean(equals(a, b))


@fn("notequal", ANY_A, ANY_B)
def _fn_notequal(a: V, b: V) -> V:
    return cty.boolean(not equals(a, b))


@fn("coalesce", var=Param("vals", DYNAMIC, allow_null=True))
def _fn_coalesce(*values: V) -> V:
    from pipeline.hcl.convert import unify

    found = unify([v.type for v in values]) if values else None
    if values and found is None:
        raise FunctionError("all arguments must have the same type")
    for value in values:
        if not value.is_null:
            assert found is not None
            return convert(value, found)
    raise FunctionError("all arguments are null or empty" if values else "no arguments")


def _to(name: str, want: cty.Type) -> None:
    @fn(name, Param("v", DYNAMIC, allow_null=True))
    def impl(value: V) -> V:
        if value.is_null:
            return value if value.type == want else cty.null(want)
        if not can_convert(value.type, want):
            raise FunctionError(f"cannot convert {what(value)} to {cty.friendly(want)}")
        try:
            return convert(value, want)
        except ConversionError as exc:
            if value.type == STRING and want in (NUMBER, BOOL):
                raise FunctionError(
                    f"cannot convert {cty.show(value)} to a {cty.friendly(want)}"
                ) from None
            raise FunctionError(f"cannot convert {what(value)}: {exc}") from None


_to("tostring", STRING)
_to("tonumber", NUMBER)
_to("tobool", BOOL)
_to("tolist", cty.ListType(DYNAMIC))
_to("toset", cty.SetType(DYNAMIC))
_to("tomap", cty.MapType(DYNAMIC))

BYTES = Capsule("bytes")


@fn("byteslen", Param("buf", BYTES))
def _fn_byteslen(buf: V) -> V:  # pragma: no cover - no bake function makes bytes
    raise FunctionError("no function here produces a bytes value")


@fn("bytesslice", Param("buf", BYTES), Param("offset", NUMBER), Param("length", NUMBER))
def _fn_bytesslice(buf: V, offset: V, length: V) -> V:  # pragma: no cover
    raise FunctionError("no function here produces a bytes value")


# --------------------------------------------------------------------------- CIDR


def _network(prefix: V) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    raw = prefix.text
    if "/" not in raw:
        raise ArgError(0, f'is not a CIDR prefix: "{raw}"')
    try:
        return ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise ArgError(0, f'is not a CIDR prefix: "{raw}"') from None


@fn("cidrhost", Param("prefix", STRING), Param("hostnum", NUMBER))
def _fn_cidrhost(prefix: V, hostnum: V) -> V:
    net = _network(prefix)
    n = whole(hostnum, 1)
    size = net.num_addresses
    index = n if n >= 0 else size + n
    if not 0 <= index < size:
        raise ArgError(1, f"prefix of {net.prefixlen} does not accommodate a host numbered {n}")
    return text(str(net.network_address + index))


@fn("cidrnetmask", Param("prefix", STRING))
def _fn_cidrnetmask(prefix: V) -> V:
    net = _network(prefix)
    if net.version != 4:
        raise ArgError(0, "must be an IPv4 prefix")
    return text(str(net.netmask))


def _subnet(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network, newbits: int, netnum: int
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    new_len = net.prefixlen + newbits
    if newbits < 0 or new_len > net.max_prefixlen:
        raise FunctionError(
            f"insufficient address space to extend prefix of {net.prefixlen} by {newbits}"
        )
    if not 0 <= netnum < (1 << newbits):
        raise FunctionError(
            f"prefix extension of {newbits} does not accommodate a subnet numbered {netnum}"
        )
    base = int(net.network_address) + (netnum << (net.max_prefixlen - new_len))
    return ipaddress.ip_network((base, new_len))


@fn("cidrsubnet", Param("prefix", STRING), Param("newbits", NUMBER), Param("netnum", NUMBER))
def _fn_cidrsubnet(prefix: V, newbits: V, netnum: V) -> V:
    net = _network(prefix)
    return text(str(_subnet(net, whole(newbits, 1), whole(netnum, 2))))


@fn("cidrsubnets", Param("prefix", STRING), var=Param("newbits", NUMBER))
def _fn_cidrsubnets(prefix: V, *newbits: V) -> V:
    net = _network(prefix)
    out: list[str] = []
    cursor = int(net.network_address)
    end = int(net.broadcast_address)
    for i, bits_v in enumerate(newbits, start=1):
        bits = whole(bits_v, i)
        if bits < 1:
            raise ArgError(i, "must be at least 1")
        new_len = net.prefixlen + bits
        if new_len > net.max_prefixlen:
            raise ArgError(i, f"would extend the prefix to {new_len} bits, which is too long")
        step = 1 << (net.max_prefixlen - new_len)
        cursor = (cursor + step - 1) // step * step  # align up
        if cursor + step - 1 > end:
            raise ArgError(i, f"not enough remaining address space for a subnet of /{new_len}")
        out.append(str(ipaddress.ip_network((cursor, new_len))))
        cursor += step
    return cty.list_of(STRING, [text(s) for s in out])


# --------------------------------------------------------------------------- semver

_VERSION = re.compile(
    r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_PART = (
    r"v?(?:\d+|[xX*])(?:\.(?:\d+|[xX*]))?(?:\.(?:\d+|[xX*]))?"
    r"(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
)
_COND = re.compile(rf"(=>|=<|>=|<=|!=|~>|[=<>~^])?\s*({_PART})")
Version = tuple[int, int, int, tuple[object, ...]]


def parse_version(raw: str) -> Version:
    m = _VERSION.fullmatch(raw.strip())
    if m is None:
        raise ValueError(f'invalid semantic version "{raw}"')
    pre = m.group(4) or ""
    return (int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), _pre_key(pre))


def _pre_key(pre: str) -> tuple[object, ...]:
    if not pre:
        return ()
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))


def _cmp(a: Version, b: Version) -> int:
    if a[:3] != b[:3]:
        return -1 if a[:3] < b[:3] else 1
    pa, pb = a[3], b[3]
    if pa == pb:
        return 0
    if not pa:
        return 1
    if not pb:
        return -1
    return -1 if pa < pb else 1


def _check(op: str, spec: str, v: Version) -> bool:
    core = spec.lstrip("v").split("+", 1)[0]
    main, _, pre = core.partition("-")
    parts = main.split(".")
    wild = [p in ("x", "X", "*") for p in parts] + [True] * (3 - len(parts))
    nums = [0 if w or i >= len(parts) else int(parts[i]) for i, w in enumerate(wild)]
    c: Version = (nums[0], nums[1], nums[2], _pre_key(pre))
    if v[3] and not c[3]:
        return False  # a prerelease only matches conditions that name one
    if op in ("", "="):
        if wild[0]:
            return True
        if wild[1]:
            return v[0] == c[0]
        if wild[2]:
            return v[:2] == c[:2]
        return _cmp(v, c) == 0
    if op == "!=":
        return not _check("=", spec, v)
    if op == ">":
        if wild[1]:
            return v[0] > c[0]
        if wild[2]:
            return v[:2] > c[:2]
        return _cmp(v, c) > 0
    if op in (">=", "=>"):
        return _cmp(v, c) >= 0
    if op == "<":
        return _cmp(v, c) < 0
    if op in ("<=", "=<"):
        if wild[1]:
            return v[0] <= c[0]
        if wild[2]:
            return v[:2] <= c[:2]
        return _cmp(v, c) <= 0
    if op in ("~", "~>"):
        if _cmp(v, c) < 0:
            return False
        if wild[1] and not wild[0]:
            return v[0] == c[0]
        return v[:2] == c[:2] if not wild[0] else True
    # caret
    if _cmp(v, c) < 0:
        return False
    if c[0] > 0 or wild[1]:
        return v[0] == c[0]
    if c[1] > 0 or wild[2]:
        return v[0] == 0 and v[1] == c[1]
    return v[:3] == c[:3]


def satisfies(version: str, constraint: str) -> bool:
    v = parse_version(version)
    for group in constraint.split("||"):
        group = re.sub(
            rf"({_PART})\s+-\s+({_PART})", lambda m: f">={m.group(1)},<={m.group(2)}", group
        )
        conditions = [c for c in re.split(r"[\s,]+", re.sub(r"([=<>~^!]+)\s+", r"\1", group)) if c]
        if not conditions:
            raise ValueError(f'improper constraint: "{constraint}"')
        ok = True
        for cond in conditions:
            m = _COND.fullmatch(cond)
            if m is None:
                raise ValueError(f'improper constraint: "{constraint}"')
            if not _check(m.group(1) or "", m.group(2), v):
                ok = False
        if ok:
            return True
    return False


@fn("semvercmp", Param("version", STRING), Param("constraint", STRING))
def _fn_semvercmp(version: V, constraint: V) -> V:
    try:
        return cty.boolean(satisfies(version.text, constraint.text))
    except ValueError as exc:
        raise FunctionError(str(exc)) from None


__all__ = ["STRINGS", "mismatch", "parse_version", "satisfies"]
