"""The string side of HCL syntax: template directives (``%{if}``, ``%{for}``) nested into
template parts, string escapes, and the heredoc quoting that lets python-hcl2's grammar
parse heredocs while keeping exact columns. Pure; no parser imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from pipeline.errors import Location, SpecError
from pipeline.hcl.values import (
    Expr,
    TemplateFor,
    TemplateIf,
    TemplatePart,
)


@dataclass(frozen=True)
class Directive:
    kind: str  # if, else, endif, for, endfor, or interp (an interpolation with a ~)
    loc: Location
    strip_left: bool
    strip_right: bool
    expr: Expr | None
    names: list[str]


Flat: TypeAlias = "str | Expr | Directive"


def nest(flat: list[Flat], loc: Location) -> tuple[TemplatePart, ...]:
    """Apply ``~`` strip markers, then nest the flat if/else/endif and for/endfor
    directives into TemplateIf/TemplateFor parts."""
    items = list(flat)
    for i, item in enumerate(items):
        if not isinstance(item, Directive):
            continue
        if item.strip_left and i > 0 and isinstance(items[i - 1], str):
            items[i - 1] = str(items[i - 1]).rstrip()
        if item.strip_right and i + 1 < len(items) and isinstance(items[i + 1], str):
            items[i + 1] = str(items[i + 1]).lstrip()
    pos = 0

    def run(stop: tuple[str, ...]) -> tuple[list[TemplatePart], Directive | None]:
        nonlocal pos
        out: list[TemplatePart] = []
        while pos < len(items):
            item = items[pos]
            pos += 1
            if not isinstance(item, Directive):
                if isinstance(item, str) and out and isinstance(out[-1], str):
                    out[-1] = out[-1] + item
                elif item != "":
                    out.append(item)
                continue
            if item.kind == "interp":
                assert item.expr is not None
                out.append(item.expr)
                continue
            if item.kind in stop:
                return out, item
            if item.kind == "if":
                assert item.expr is not None
                then, end = run(("else", "endif"))
                otherwise: list[TemplatePart] = []
                if end is not None and end.kind == "else":
                    otherwise, end = run(("endif",))
                if end is None or end.kind != "endif":
                    raise SpecError(item.loc, "%{if} without a matching %{endif}")
                out.append(TemplateIf(item.expr, tuple(then), tuple(otherwise)))
            elif item.kind == "for":
                assert item.expr is not None
                body, end = run(("endfor",))
                if end is None:
                    raise SpecError(item.loc, "%{for} without a matching %{endfor}")
                key, value = (None, item.names[0]) if len(item.names) == 1 else item.names
                out.append(TemplateFor(key, value, item.expr, tuple(body)))
            else:
                raise SpecError(item.loc, f"%{{{item.kind}}} without a matching opening directive")
        return out, None

    parts, _ = run(())
    return tuple(parts) if parts else ("",)


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def _at(loc: Location, text: str, i: int) -> Location:
    """The location of ``text[i]`` when ``text`` starts at ``loc``."""
    before = text[:i]
    newlines = before.count("\n")
    if not newlines:
        return Location(loc.file, loc.line, loc.col + i)
    return Location(loc.file, loc.line + newlines, i - before.rfind("\n"))


def unescape(text: str, loc: Location) -> str:
    """Decode HCL string escapes: \\n \\r \\t \\" \\\\ \\uNNNN \\UNNNNNNNN. A bad
    escape is reported at its backslash."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in ("u", "U"):
            width = 4 if nxt == "u" else 8
            digits = text[i + 2 : i + 2 + width]
            if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise SpecError(_at(loc, text, i), f"invalid escape sequence \\{nxt}{digits}")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        else:
            raise SpecError(_at(loc, text, i), f"invalid escape sequence \\{nxt}")
    return "".join(out)


def quote_heredoc(body: str, first_col: int) -> tuple[str, dict[int, tuple[int, ...]]]:
    """Heredoc text as the inside of a quoted string: literal backslashes and quotes
    escaped, ``${...}`` / ``%{...}`` sequences (and ``$${``/``%%{``) kept verbatim.
    Also returns where escapes were inserted (line -> columns, 1-based, the text
    starting at ``first_col`` of line 1), so positions can be mapped back."""
    out: list[str] = []
    inserted: dict[int, list[int]] = {}
    line, col = 1, first_col

    def emit(text: str) -> None:
        nonlocal line, col
        out.append(text)
        newlines = text.count("\n")
        if newlines:
            line += newlines
            col = len(text) - text.rfind("\n")
        else:
            col += len(text)

    i, n = 0, len(body)
    while i < n:
        if body.startswith(("$${", "%%{"), i):
            emit(body[i : i + 3])
            i += 3
        elif body.startswith(("${", "%{"), i):
            end = _skip_sequence(body, i + 2)
            emit(body[i:end])
            i = end
        else:
            c = body[i]
            if c in ('"', "\\"):
                inserted.setdefault(line, []).append(col)
                emit("\\")
            emit(c)
            i += 1
    return "".join(out), {k: tuple(v) for k, v in inserted.items()}


def _skip_sequence(text: str, i: int) -> int:
    """Index just past the ``}`` closing a ``${`` / ``%{`` whose body starts at ``i``."""
    depth, n = 1, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i = _skip_quoted(text, i + 1)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _skip_quoted(text: str, i: int) -> int:
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        elif text.startswith(("${", "%{"), i):
            i = _skip_sequence(text, i + 2)
        else:
            i += 1
    return n


Strips: TypeAlias = "dict[tuple[int, int], tuple[bool, bool]]"


def mark_strips(text: str) -> tuple[str, Strips]:
    """Strip markers of interpolations (``${~ x ~}``), which the grammar does not
    know: each ``~`` just inside an interpolation's braces becomes a space (so every
    column stays where it was), and the result maps the (line, column) of the
    interpolation's ``$`` to (strip left, strip right). ``$${`` escapes are skipped."""
    if "~" not in text or "${" not in text:
        return text, {}
    chars = list(text)
    strips: Strips = {}
    line, line_start = 1, 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line, line_start = line + 1, i + 1
            i += 1
            continue
        if text.startswith("$${", i):
            i += 3
            continue
        if text.startswith("${", i):
            end = _skip_sequence(text, i + 2)
            left = i + 2 < n and text[i + 2] == "~"
            right = end - 2 > i + 2 and text[end - 1] == "}" and text[end - 2] == "~"
            if left:
                chars[i + 2] = " "
            if right:
                chars[end - 2] = " "
            if left or right:
                strips[(line, i - line_start + 1)] = (left, right)
            i += 2
            continue
        i += 1
    return "".join(chars), strips


def unclosed_brace(text: str) -> tuple[int, int] | None:
    """(line, column) of the last ``{`` that is never closed, skipping strings,
    comments and heredocs; None when every brace is closed."""
    stack: list[tuple[int, int]] = []
    line, line_start, i, n = 1, 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line, line_start = line + 1, i + 1
        elif c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            stop = n if end < 0 else end + 2
            line += text.count("\n", i, stop)
            if "\n" in text[i:stop]:
                line_start = text.rfind("\n", i, stop) + 1
            i = stop
            continue
        elif c == '"':
            stop = _skip_quoted(text, i + 1)
            line += text.count("\n", i, stop)
            if "\n" in text[i:stop]:
                line_start = text.rfind("\n", i, stop) + 1
            i = stop
            continue
        elif text.startswith("<<", i):
            marker_end = text.find("\n", i)
            marker = text[i + 2 : marker_end].lstrip("-").strip() if marker_end > 0 else ""
            if marker.isidentifier():
                close = text.find("\n", marker_end + 1)
                while close >= 0 and text[close + 1 :].split("\n", 1)[0].strip() != marker:
                    close = text.find("\n", close + 1)
                stop = n if close < 0 else close + 1
                line += text.count("\n", i, stop)
                line_start = text.rfind("\n", i, stop) + 1
                i = stop
                continue
        elif c == "{":
            stack.append((line, i - line_start + 1))
        elif c == "}" and stack:
            stack.pop()
        i += 1
    return stack[-1] if stack else None


def blank_block_comments(text: str) -> str:
    """``text`` with every ``/* ... */`` comment outside strings and heredocs turned
    into spaces (newlines kept), so a comment may stand wherever a space may, as HCL
    allows; positions do not move."""
    if "/*" not in text:
        return text
    chars = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            stop = n if end < 0 else end + 2
            for j in range(i, stop):
                if chars[j] != "\n":
                    chars[j] = " "
            i = stop
        elif c == '"':
            i = _skip_quoted(text, i + 1)
        elif text.startswith("<<", i):
            i = _skip_heredoc(text, i)
        else:
            i += 1
    return "".join(chars)


def _skip_heredoc(text: str, i: int) -> int:
    """Index just past the heredoc starting at ``i`` (``<<`` / ``<<-``), or i + 2."""
    marker_end = text.find("\n", i)
    marker = text[i + 2 : marker_end].lstrip("-").strip() if marker_end > 0 else ""
    if not marker.isidentifier():
        return i + 2
    close = text.find("\n", marker_end + 1)
    while close >= 0 and text[close + 1 :].split("\n", 1)[0].strip() != marker:
        close = text.find("\n", close + 1)
    if close < 0:
        return len(text)
    after = text.find("\n", close + 1)
    return len(text) if after < 0 else after
