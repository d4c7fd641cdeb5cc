"""String functions (go-cty's string family and bake's path helpers). Pure.

Case mapping, spaces and title-casing follow Go's ``unicode``/``strings`` rules
(one-rune mappings only, so ``upper("ß")`` stays ``"ß"``); lengths and offsets count
grapheme clusters (:mod:`pipeline.hcl.graphemes`).
"""

from __future__ import annotations

import os
import re
import unicodedata

from pipeline.hcl import cty, graphemes
from pipeline.hcl.cty import NUMBER, STRING, V
from pipeline.hcl.fnbase import STRINGS, ArgError, FunctionError, Param, fn, num, text, whole

S = Param("str", STRING)

# Go's unicode.IsSpace
GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _upper(s: str) -> str:
    return "".join(u if len(u := c.upper()) == 1 else c for c in s)


def _lower(s: str) -> str:
    return "".join(u if len(u := c.lower()) == 1 else c for c in s)


@fn("upper", S)
def _fn_upper(s: V) -> V:
    return text(_upper(s.text))


@fn("lower", S)
def _fn_lower(s: V) -> V:
    return text(_lower(s.text))


@fn("reverse", S)
def _fn_reverse(s: V) -> V:
    return text("".join(reversed(graphemes.clusters(s.text))))


@fn("strlen", S)
def _fn_strlen(s: V) -> V:
    return num(graphemes.count(s.text))


@fn("substr", S, Param("offset", NUMBER), Param("length", NUMBER))
def _fn_substr(s: V, offset_v: V, length_v: V) -> V:
    parts = graphemes.clusters(s.text)
    offset, length = whole(offset_v, 1), whole(length_v, 2)
    if offset < 0:
        offset += len(parts)
    elif length == 0:
        return text("")
    rest = parts[offset:] if offset > 0 else parts
    if length < 0 or length == 0:  # go-cty takes the rest for a 0 after a negative offset
        return text("".join(rest))
    return text("".join(rest[:length]))


@fn("join", Param("separator", STRING), Param("list", STRINGS), var=Param("lists", STRINGS))
def _fn_join(sep: V, *lists: V) -> V:
    items: list[str] = []
    for li, lst in enumerate(lists):
        for ei, item in enumerate(lst.items):
            if item.is_null:
                where = f"element {ei} of list {li + 1}" if len(lists) > 1 else f"element {ei}"
                raise ArgError(li + 1, f"has a null {where}; cannot join null values")
            items.append(item.text)
    return text(sep.text.join(items))


@fn("sort", Param("list", STRINGS))
def _fn_sort(lst: V) -> V:
    values = []
    for i, item in enumerate(lst.items):
        if item.is_null:
            raise FunctionError(f"element {i} is null; a null string cannot be sorted")
        values.append(item.text)
    return cty.list_of(STRING, [text(v) for v in sorted(values)])


@fn("split", Param("separator", STRING), Param("str", STRING))
def _fn_split(sep: V, s: V) -> V:
    parts = list(s.text) if sep.text == "" else s.text.split(sep.text)
    return cty.list_of(STRING, [text(p) for p in parts])


_TRAILING_NEWLINES = re.compile(r"(?:\r\n?|\n)*\Z")


@fn("chomp", S)
def _fn_chomp(s: V) -> V:
    return text(_TRAILING_NEWLINES.sub("", s.text, count=1))


@fn("indent", Param("spaces", NUMBER), S)
def _fn_indent(spaces: V, s: V) -> V:
    pad = " " * max(0, whole(spaces, 0))
    return text(s.text.replace("\n", "\n" + pad))


def _is_separator(c: str) -> bool:
    if ord(c) <= 0x7F:
        return not (c.isalnum() or c == "_")
    if unicodedata.category(c)[0] == "L" or unicodedata.category(c) == "Nd":
        return False
    return c in GO_SPACE


@fn("title", S)
def _fn_title(s: V) -> V:
    out, prev = [], " "
    for c in s.text:
        if _is_separator(prev):
            t = c.title()
            out.append(t if len(t) == 1 else c)
        else:
            out.append(c)
        prev = c
    return text("".join(out))


def go_trim_space(s: str) -> str:
    start, end = 0, len(s)
    while start < end and s[start] in GO_SPACE:
        start += 1
    while end > start and s[end - 1] in GO_SPACE:
        end -= 1
    return s[start:end]


@fn("trimspace", S)
def _fn_trimspace(s: V) -> V:
    return text(go_trim_space(s.text))


@fn("trim", S, Param("cutset", STRING))
def _fn_trim(s: V, cutset: V) -> V:
    return text(s.text.strip(cutset.text) if cutset.text else s.text)


@fn("trimprefix", S, Param("prefix", STRING))
def _fn_trimprefix(s: V, prefix: V) -> V:
    return text(s.text.removeprefix(prefix.text))


@fn("trimsuffix", S, Param("suffix", STRING))
def _fn_trimsuffix(s: V, suffix: V) -> V:
    return text(s.text.removesuffix(suffix.text))


@fn("replace", S, Param("substr", STRING), Param("replace", STRING))
def _fn_replace(s: V, old: V, new: V) -> V:
    return text(s.text.replace(old.text, new.text))


@fn("startswith", S, Param("prefix", STRING))
def _fn_startswith(s: V, prefix: V) -> V:
    return cty.boolean(s.text.startswith(prefix.text))


@fn("endswith", S, Param("suffix", STRING))
def _fn_endswith(s: V, suffix: V) -> V:
    return cty.boolean(s.text.endswith(suffix.text))


_TARGET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@fn("sanitize", Param("name", STRING))
def _fn_sanitize(name: V) -> V:
    return text("".join(c if c in _TARGET_CHARS else "_" for c in name.text))


def go_clean(path: str) -> str:
    """Go's ``path.Clean``: lexical processing of a slash-separated path."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


@fn("basename", Param("path", STRING))
def _fn_basename(path: V) -> V:
    p = path.text.rstrip("/")
    if path.text == "":
        return text(".")
    if p == "":
        return text("/")
    return text(p.rsplit("/", 1)[-1])


@fn("dirname", Param("path", STRING))
def _fn_dirname(path: V) -> V:
    p = path.text
    head = p[: p.rfind("/") + 1] if "/" in p else ""
    return text(go_clean(head))


@fn("homedir")
def _fn_homedir() -> V:
    return text(os.path.expanduser("~"))


__all__ = ["GO_SPACE", "go_clean", "go_trim_space"]
