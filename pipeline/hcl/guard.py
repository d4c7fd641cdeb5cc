"""Bounds on spec text checked before the parser sees it. Pure.

python-hcl2's grammar matches a quoted string's characters and a heredoc's body with
regular expressions whose backtracking state grows with the match (about 200 bytes
of memory per character: a 10 MB string takes 2 GB), and the cost of a whole parse
grows with the file. So the text is measured first, in one linear scan, and refused
with a located SpecError naming the limit:

* :func:`decode` turns a file's bytes into text (UTF-8; a UTF-8 byte-order mark is
  dropped; anything else, including UTF-16, is refused at the first bad byte);
* :func:`check_text` refuses a file over ``Limits.spec_bytes`` and any quoted string
  or heredoc over ``Limits.spec_string_chars`` (located at its opening quote or
  ``<<``), and NUL characters, which no spec needs.

Nesting depth and the number of blocks are checked on the syntax tree
(:mod:`pipeline.hcl.syntax`) before it is converted.
"""

from __future__ import annotations

from pipeline.errors import Location, SpecError
from pipeline.limits import Limits, over

_BOM = "\ufeff"


def position(text: str, index: int) -> tuple[int, int]:
    """1-based (line, column) of ``text[index]``."""
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, col


def decode(data: bytes, path: str) -> str:
    """Spec bytes as text: UTF-8, an optional UTF-8 BOM dropped. SpecError located at
    the first byte that is not UTF-8 (UTF-16 files are named as such)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError(Location(path, 1, 1), "UTF-16 text; save the file as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8")
        line, col = position(good + "?", len(good))
        byte = data[exc.start]
        raise SpecError(
            Location(path, line, col), f"not UTF-8 text (byte 0x{byte:02x}); save it as UTF-8"
        ) from None
    return text[1:] if text.startswith(_BOM) else text


def check_size(size: int, path: str, limits: Limits) -> None:
    """Refuse a file of ``size`` bytes over ``Limits.spec_bytes``."""
    if size > limits.spec_bytes:
        raise SpecError(
            Location(path),
            f"file of {size:,} bytes; " + over("spec_bytes", limits.spec_bytes),
        )


def check_text(text: str, path: str, limits: Limits) -> None:
    """Refuse (located SpecError) text over the size limit, a NUL character, or a
    quoted string or heredoc over the string limit. Linear in ``len(text)``; strings
    are told from code by quotes, comments and heredoc markers, as HCL does."""
    check_size(len(text.encode("utf-8", "surrogatepass")), path, limits)
    nul = text.find("\0")
    if nul >= 0:
        raise SpecError(Location(path, *position(text, nul)), "NUL character in a spec file")
    limit = limits.spec_string_chars
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            end = _string_end(text, i + 1)
            if end - i - 1 > limit:
                _too_long(text, path, i, "quoted string", end - i - 1, limit)
            i = end + 1
        elif c == "#" or text.startswith("//", i):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            i = n if close < 0 else close + 2
        elif text.startswith("<<", i):
            i = _heredoc(text, path, i, limit)
        else:
            i += 1


def _string_end(text: str, i: int) -> int:
    """Index of the quote closing the string whose text starts at ``i`` (``len(text)``
    when unterminated). Interpolations (``${...}``, ``%{...}``), with the strings
    nested in them, are part of the string; python-hcl2 lets a quoted string run
    over newlines."""
    n = len(text)
    stack: list[int | None] = [None]  # None: in string text; a number: brace depth
    while i < n:
        c = text[i]
        top = stack[-1]
        if top is None:
            if c == "\\":
                i += 2
                continue
            if text.startswith(("$${", "%%{"), i):  # escaped: literal text
                i += 3
                continue
            if text.startswith(("${", "%{"), i):
                stack.append(1)
                i += 2
                continue
            if c == '"':
                stack.pop()
                if not stack:
                    return i
        elif c == '"':  # a string nested in an interpolation
            stack.append(None)
        elif c == "{":
            stack[-1] = top + 1
        elif c == "}":
            if top == 1:
                stack.pop()  # back in the string text around it
            else:
                stack[-1] = top - 1
        i += 1
    return n


def _heredoc(text: str, path: str, start: int, limit: int) -> int:
    """Past the heredoc at ``start`` (``<<ID`` or ``<<-ID``), checking its length;
    ``start + 2`` when this ``<<`` starts no heredoc."""
    i = start + 2
    if text.startswith("-", i):
        i += 1
    j = i
    while j < len(text) and (text[j].isalnum() or text[j] in "_-."):
        j += 1
    marker = text[i:j]
    if not marker or not marker[0].isalpha() or not text.startswith("\n", j):
        return start + 2
    body_start = j + 1
    pos = body_start
    while True:
        nl = text.find("\n", pos)
        line_end = len(text) if nl < 0 else nl
        if text[pos:line_end].strip() == marker:
            body = pos - body_start
            if body > limit:
                _too_long(text, path, start, "heredoc", body, limit)
            return line_end
        if nl < 0:  # unterminated: the parser says so, if the rest is not too long
            if len(text) - body_start > limit:
                _too_long(text, path, start, "heredoc", len(text) - body_start, limit)
            return len(text)
        pos = nl + 1


def _too_long(text: str, path: str, index: int, what: str, size: int, limit: int) -> None:
    raise SpecError(
        Location(path, *position(text, index)),
        f"{what} of {size:,} characters; " + over("spec_string_chars", limit, "characters"),
    )
