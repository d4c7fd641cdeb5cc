"""``regex``, ``regexall`` and ``regex_replace``: Go (RE2) patterns on Python's ``re``. Pure.

Patterns are translated: ``\\z`` and an unflagged ``$`` mean the end of the text, as in
RE2; ``(?<name>...)`` is a named group; ``[[:alpha:]]``-style POSIX classes and
``\\Q...\\E`` quoting are expanded. Go's rules for successive matches (an empty match
right after a match is skipped) and its ``$1`` / ``${name}`` replacement syntax are
kept. Unicode class escapes (``\\pL``) and the ``U`` flag have no equivalent and are
refused with a message (see docs/bake.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

from pipeline.hcl import cty
from pipeline.hcl.cty import STRING, V
from pipeline.hcl.fnbase import ArgError, FunctionError, Param, fn, text

_POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}


def translate(pattern: str) -> str:
    """An RE2 pattern as a Python ``re`` pattern; ValueError for what has no equivalent."""
    out: list[str] = []
    multiline = False
    lead = re.match(r"\(\?([imsU]+)\)", pattern)
    if lead and "m" in lead.group(1):
        multiline = True
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "Q":
                end = pattern.find("\\E", i + 2)
                chunk = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
                out.append(re.escape(chunk))
                i = n if end < 0 else end + 2
                continue
            if nxt == "z":
                out.append("\\Z")
            elif nxt in "pP":
                raise ValueError("Unicode class escapes (\\p) are not supported")
            elif nxt == "Z":
                raise ValueError("invalid escape sequence: \\Z")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                if end > 0:
                    name = pattern[i + 2 : end]
                    negate = name.startswith("^")
                    name = name.lstrip("^")
                    if name not in _POSIX:
                        raise ValueError(f"invalid character class range: [:{name}:]")
                    if negate:
                        raise ValueError("negated POSIX classes are not supported")
                    out.append(_POSIX[name])
                    i = end + 2
                    continue
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":
                out.append("\\]")
                i += 1
            continue
        if pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
            out.append("(?P<")
            i += 3
            continue
        if pattern.startswith("(?", i):
            flags = re.match(r"\(\?([a-zA-Z]*)", pattern[i:])
            if flags and "U" in flags.group(1):
                raise ValueError("the U (ungreedy) flag is not supported")
        if c == "$" and not multiline:
            out.append("(?!\\n)\\Z")
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(translate(pattern))
    except (re.error, ValueError) as exc:
        raise ArgError(0, f"is not a valid pattern: {exc}") from None


def find_all(regex: re.Pattern[str], s: str) -> Iterator[re.Match[str]]:
    """Successive matches with Go's rule: no empty match right after a previous one."""
    pos, prev_end, n = 0, -1, len(s)
    while pos <= n:
        m = regex.search(s, pos)
        if m is None:
            return
        accept = True
        if m.end() == m.start():
            if m.start() == prev_end:
                accept = False
            pos = m.end() + 1
        else:
            pos = m.end()
        prev_end = m.end()
        if accept:
            yield m


def _result_type(regex: re.Pattern[str]) -> str:
    groups = regex.groups
    names = regex.groupindex
    if groups == 0:
        return "string"
    if names and len(names) != groups:
        raise ArgError(0, "cannot mix both named and unnamed capture groups")
    return "object" if names else "tuple"


def _result(regex: re.Pattern[str], m: re.Match[str], kind: str) -> V:
    if kind == "string":
        return text(m.group(0))
    if kind == "tuple":
        return cty.tuple_of(cty.null(STRING) if g is None else text(g) for g in m.groups())
    return cty.object_of(
        {
            name: cty.null(STRING) if m.group(name) is None else text(m.group(name))
            for name in regex.groupindex
        }
    )


@fn("regex", Param("pattern", STRING), Param("string", STRING))
def _fn_regex(pattern: V, s: V) -> V:
    regex = compile_pattern(pattern.text)
    kind = _result_type(regex)
    m = regex.search(s.text)
    if m is None:
        raise FunctionError("pattern did not match any part of the given string")
    return _result(regex, m, kind)


@fn("regexall", Param("pattern", STRING), Param("string", STRING))
def _fn_regexall(pattern: V, s: V) -> V:
    regex = compile_pattern(pattern.text)
    kind = _result_type(regex)
    results = [_result(regex, m, kind) for m in find_all(regex, s.text)]
    if kind == "string":
        return cty.list_of(STRING, results)
    if not results:
        if kind == "tuple":
            return cty.list_of(cty.TupleType((STRING,) * regex.groups), ())
        return cty.list_of(cty.ObjectType.of(dict.fromkeys(regex.groupindex, STRING)), ())
    return cty.list_of(results[0].type, results)


_TEMPLATE = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]*)\}|([A-Za-z0-9_]+))")


def expand(template: str, m: re.Match[str]) -> str:
    """Go's ``Regexp.Expand``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``; an
    unknown group gives the empty string, a malformed ``$`` stays as is."""

    def one(t: re.Match[str]) -> str:
        if t.group(0) == "$$":
            return "$"
        name = t.group(1) if t.group(1) is not None else t.group(2)
        if name is None or name == "":
            return t.group(0) if t.group(1) is None else ""
        if name.isdigit():
            i = int(name)
            if i <= (m.re.groups or 0):
                return m.group(i) or ""
            return ""
        if name in m.re.groupindex:
            return m.group(name) or ""
        return ""

    return _TEMPLATE.sub(one, template)


@fn("regex_replace", Param("str", STRING), Param("pattern", STRING), Param("replace", STRING))
def _fn_regex_replace(s: V, pattern: V, replacement: V) -> V:
    try:
        regex = compile_pattern(pattern.text)
    except ArgError as exc:
        raise ArgError(1, str(exc).split(" ", 2)[2]) from None
    source, out, last = s.text, [], 0
    for m in find_all(regex, source):
        out.append(source[last : m.start()])
        out.append(expand(replacement.text, m))
        last = m.end()
    out.append(source[last:])
    return text("".join(out))
