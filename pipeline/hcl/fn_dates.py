"""Date and time functions: ``formatdate``, ``formattimestamp``, ``timeadd``,
``timestamp`` and ``unixtimestampparse``. Pure apart from ``timestamp`` reading the
clock (marked volatile: a cache key built from it is not reproducible).

Timestamps are strict RFC 3339 (``2006-01-02T15:04:05Z``, fractions and ``+hh:mm``
offsets allowed) and keep their offset; results are written as RFC 3339 without
fractional seconds, as Go's ``time.RFC3339`` layout writes them.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone

from pipeline.hcl import cty
from pipeline.hcl.cty import DYNAMIC, NUMBER, STRING, V
from pipeline.hcl.fnbase import ArgError, FunctionError, Param, fn, num, text

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z"
)
_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
]  # fmt: skip
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def parse_timestamp(raw: str, index: int) -> datetime:
    m = _RFC3339.match(raw)
    if m is None:
        raise ArgError(index, f'is not a valid RFC 3339 timestamp: "{raw}"')
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    frac, zone = m.group(7), m.group(8)
    if not 1 <= month <= 12:
        raise ArgError(index, "is not a valid RFC 3339 timestamp: month out of range")
    if not 1 <= day <= calendar.monthrange(max(year, 1), month)[1]:
        raise ArgError(index, "is not a valid RFC 3339 timestamp: day out of range")
    if hour > 23 or minute > 59 or second > 59:
        raise ArgError(index, "is not a valid RFC 3339 timestamp: time out of range")
    if zone == "Z":
        tz = UTC
    else:
        zh, zm = int(zone[1:3]), int(zone[4:6])
        if zh > 23 or zm > 59:
            raise ArgError(index, "is not a valid RFC 3339 timestamp: offset out of range")
        offset = timedelta(hours=zh, minutes=zm)
        tz = timezone(-offset if zone[0] == "-" else offset)
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    if year < 1:
        raise ArgError(index, "is not a timestamp this implementation handles: year 0")
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


def rfc3339(t: datetime) -> str:
    offset = t.utcoffset() or timedelta(0)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    if offset == timedelta(0):
        return base + "Z"
    return base + _offset(offset, ":")


def _offset(offset: timedelta, sep: str) -> str:
    total = int(offset.total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    h, m = divmod(abs(total), 60)
    return f"{sign}{h:02d}{sep}{m:02d}"


def _tokens(fmt: str) -> list[str]:
    out: list[str] = []
    i, n = 0, len(fmt)
    while i < n:
        c = fmt[i]
        if c == "'":
            if fmt.startswith("''", i):
                out.append("''")
                i += 2
                continue
            j = i + 1
            while j < n:
                if fmt[j] == "'":
                    if fmt.startswith("''", j):
                        j += 2
                        continue
                    break
                j += 1
            out.append(fmt[i : j + 1])
            i = j + 1
        elif c.isascii() and c.isalpha():
            j = i
            while j < n and fmt[j] == c:
                j += 1
            out.append(fmt[i:j])
            i = j
        else:
            j = i + 1
            while j < n and fmt[j] != "'" and not (fmt[j].isascii() and fmt[j].isalpha()):
                j += 1
            out.append(fmt[i:j])
            i = j
    return out


def format_date(fmt: str, t: datetime) -> str:
    out: list[str] = []
    for tok in _tokens(fmt):
        c, n = tok[0], len(tok)
        if c == "'":
            if n == 1 or tok[-1] != "'":
                raise ArgError(0, "has an unterminated literal '")
            out.append("'" if n == 2 else tok[1:-1].replace("''", "'"))
        elif c.isascii() and c.isalpha():
            out.append(_verb(tok, t))
        else:
            out.append(tok)
    return "".join(out)


def _verb(tok: str, t: datetime) -> str:
    c, n = tok[0], len(tok)
    table: dict[tuple[str, int], str] = {
        ("Y", 2): f"{t.year % 100:02d}",
        ("Y", 4): f"{t.year:04d}",
        ("M", 1): str(t.month),
        ("M", 2): f"{t.month:02d}",
        ("M", 3): _MONTHS[t.month - 1][:3],
        ("M", 4): _MONTHS[t.month - 1],
        ("D", 1): str(t.day),
        ("D", 2): f"{t.day:02d}",
        ("E", 3): _DAYS[t.weekday()][:3],
        ("E", 4): _DAYS[t.weekday()],
        ("h", 1): str(t.hour),
        ("h", 2): f"{t.hour:02d}",
        ("H", 1): str(t.hour % 12 or 12),
        ("H", 2): f"{t.hour % 12 or 12:02d}",
        ("A", 2): "AM" if t.hour < 12 else "PM",
        ("a", 2): "am" if t.hour < 12 else "pm",
        ("m", 1): str(t.minute),
        ("m", 2): f"{t.minute:02d}",
        ("s", 1): str(t.second),
        ("s", 2): f"{t.second:02d}",
    }
    if (c, n) in table:
        return table[(c, n)]
    offset = t.utcoffset() or timedelta(0)
    if c == "Z":
        if n == 1:
            return "Z" if offset == timedelta(0) else _offset(offset, ":")
        if n == 3:
            return "UTC" if offset == timedelta(0) else _offset(offset, "")
        if n == 4:
            return _offset(offset, "")
        if n == 5:
            return _offset(offset, ":")
    if c in "YMDEhHAamsZ":
        raise ArgError(0, f'has the invalid date format verb "{tok}"')
    raise ArgError(0, f'has the invalid date format verb "{tok}"')


@fn("formatdate", Param("format", STRING), Param("time", STRING))
def _fn_formatdate(fmt: V, time: V) -> V:
    return text(format_date(fmt.text, parse_timestamp(time.text, 1)))


def _unix(value: V, index: int) -> datetime:
    n = value.number
    if n.denominator != 1:
        raise ArgError(index, "must be a whole number of seconds")
    try:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=n.numerator)
    except OverflowError:
        raise ArgError(index, "is out of the range of dates") from None


@fn("formattimestamp", Param("format", STRING), Param("time", DYNAMIC))
def _fn_formattimestamp(fmt: V, time: V) -> V:
    if time.type == STRING:
        t = parse_timestamp(time.text, 1)
    elif time.type == NUMBER:
        t = _unix(time, 1)
    else:
        raise ArgError(1, "must be a string timestamp or a unix timestamp number")
    if fmt.text == "X":
        return text(str(int(t.timestamp())))
    return text(format_date(fmt.text, t))


_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT = {"ns": 1e-3, "us": 1, "µs": 1, "μs": 1, "ms": 1e3, "s": 1e6, "m": 6e7, "h": 3.6e9}


def parse_duration(raw: str) -> timedelta:
    """Go's ``time.ParseDuration`` (to microseconds)."""
    s = raw
    sign = -1 if s.startswith("-") else 1
    s = s.lstrip("+-") if s[:1] in "+-" else s
    if s == "0":
        return timedelta(0)
    if not s:
        raise ValueError(f'invalid duration "{raw}"')
    micros = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            raise ValueError(f'invalid duration "{raw}"')
        micros += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    return timedelta(microseconds=sign * micros)


@fn("timeadd", Param("timestamp", STRING), Param("duration", STRING))
def _fn_timeadd(ts: V, duration: V) -> V:
    t = parse_timestamp(ts.text, 0)
    try:
        delta = parse_duration(duration.text)
    except ValueError as exc:
        raise ArgError(1, f"is not a duration: {exc}") from None
    return text(rfc3339(t + delta))


@fn("timestamp", volatile=True)
def _fn_timestamp() -> V:
    return text(rfc3339(datetime.now(UTC).replace(microsecond=0)))


@fn("unixtimestampparse", Param("unix_timestamp", NUMBER))
def _fn_unixtimestampparse(value: V) -> V:
    t = _unix(value, 0)
    iso_year, iso_week, _ = t.isocalendar()
    fields = {
        "year": num(t.year),
        "year_day": num(t.timetuple().tm_yday),
        "day": num(t.day),
        "month": num(t.month),
        "month_name": text(_MONTHS[t.month - 1]),
        "weekday": num((t.weekday() + 1) % 7),
        "weekday_name": text(_DAYS[t.weekday()]),
        "hour": num(t.hour),
        "minute": num(t.minute),
        "second": num(t.second),
        "rfc3339": text(rfc3339(t)),
        "iso_year": num(iso_year),
        "iso_week": num(iso_week),
    }
    return cty.object_of(fields)


__all__ = ["FunctionError", "format_date", "parse_duration", "parse_timestamp", "rfc3339"]
