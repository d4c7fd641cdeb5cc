"""Words, quotes and variables in one Dockerfile instruction's text, by Docker's rules:
variable expansion (``$X``, ``${X}``, ``${X:-d}``, ``${X:+a}``, ``${X#p}``, ``${X%s}``),
word splitting with quotes and the escape character, ``--flag`` parsing, JSON (exec form) arrays and
``key=value`` lists. Pure.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping

from pipeline.model import Pairs

NAME_START = re.compile(r"[A-Za-z_]")
NAME_CHARS = re.compile(r"[A-Za-z0-9_]*")
# ---------------------------------------------------------------------------
# words, quotes and variables (Docker's rules, on one instruction's text)


class _Word:
    """Docker's single-word processing: quotes and escapes removed, variables
    substituted, whitespace kept. ``env`` maps set variables to values; a name
    missing from it is unset. Raises ValueError on malformed input."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.s = text
        self.i = 0
        self.env = env
        self.escape = escape

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def take(self) -> str:
        c = self.peek()
        self.i += 1
        return c

    def run(self, stop: str = "") -> str:
        out: list[str] = []
        while True:
            c = self.peek()
            if not c:
                if stop:
                    raise ValueError(f"missing '{stop}' in {self.s!r}")
                break
            if stop and c == stop:
                self.take()
                break
            if c == "'":
                out.append(self.single())
            elif c == '"':
                out.append(self.double())
            elif c == "$":
                out.append(self.dollar())
            elif c == self.escape:
                self.take()
                out.append(self.take())  # an escape at the very end is dropped
            else:
                out.append(self.take())
        return "".join(out)

    def single(self) -> str:
        self.take()
        end = self.s.find("'", self.i)
        if end < 0:
            raise ValueError(f"unterminated single quote in {self.s!r}")
        text = self.s[self.i : end]
        self.i = end + 1
        return text

    def double(self) -> str:
        self.take()
        out: list[str] = []
        while True:
            c = self.peek()
            if not c:
                raise ValueError(f"unterminated double quote in {self.s!r}")
            if c == '"':
                self.take()
                return "".join(out)
            if c == "$":
                out.append(self.dollar())
                continue
            self.take()
            if c == self.escape and self.peek() in ('"', "$", self.escape):
                out.append(self.take())
            elif c == self.escape and not self.peek():
                continue
            else:
                out.append(c)

    def name(self) -> str:
        if self.peek().isdigit():
            start = self.i
            while self.peek().isdigit():
                self.take()
            return self.s[start : self.i]
        if not NAME_START.match(self.peek()):
            return ""
        m = NAME_CHARS.match(self.s, self.i)
        assert m is not None
        self.i = m.end()
        return m.group()

    def dollar(self) -> str:
        self.take()
        if self.peek() == "$":  # "$$" (the shell's PID) is never set: BuildKit gives ""
            self.take()
            return ""
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.take()
        name = self.name()
        if not name:
            raise ValueError(f"bad substitution in {self.s!r}")
        value = self.env.get(name)
        c = self.take()
        if not c:
            raise ValueError(f"missing '}}' in {self.s!r}")
        if c == "}":
            return value or ""
        if c in ("#", "%"):
            longest = self.peek() == c
            if longest:
                self.take()
            return _trim(value or "", self.run(stop="}"), c == "#", longest)
        colon = c == ":"
        op = self.take() if colon else c
        if op not in ("-", "+", "?"):
            raise ValueError(f"unsupported modifier {c + op if colon else c!r} in {self.s!r}")
        word = self.run(stop="}")
        present = bool(value) if colon else value is not None
        if op == "-":
            return value if present and value is not None else word
        if op == "+":
            return word if present else ""
        if not present:
            raise ValueError(f"{name}: {word or 'is not set'}")
        return value or ""


def _trim(value: str, pattern: str, prefix: bool, longest: bool) -> str:
    """``${V#p}`` / ``${V##p}`` (a prefix matching the glob ``p`` removed, shortest or
    longest) and ``${V%s}`` / ``${V%%s}`` (a suffix)."""
    regex = re.compile(fnmatch.translate(pattern))
    cuts = range(len(value), -1, -1) if longest else range(len(value) + 1)
    for n in cuts:
        part = value[:n] if prefix else value[len(value) - n :]
        if regex.match(part):
            return value[n:] if prefix else value[: len(value) - n]
    return value


def expand(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """``text`` after Docker's word processing: quotes and escapes removed, and
    ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:+alt}``,
    ``${VAR+alt}``, ``${VAR:?message}`` and ``${VAR?message}`` substituted from ``env``
    (a missing name is unset; unset expands to ""). Whitespace is kept (no word
    splitting). Raises ValueError on unterminated quotes or bad substitutions."""
    if not any(c in text for c in ("$", "'", '"', escape)):
        return text
    return _Word(text, env, escape).run()


class _Heredoc(_Word):
    """Variables only: quotes are literal; a backslash escapes ``$``, ``\\`` and ``` ` ```."""

    def run(self, stop: str = "") -> str:
        if stop:
            return super().run(stop)
        out: list[str] = []
        while (c := self.peek()) != "":
            if c == "$":
                out.append(self.dollar())
            elif c == "\\" and self.s[self.i + 1 : self.i + 2] in ("$", "\\", "`"):
                self.take()
                out.append(self.take())
            else:
                out.append(self.take())
        return "".join(out)


def expand_variables(text: str, env: Mapping[str, str]) -> str:
    """A heredoc's text with ``$VAR`` and ``${...}`` substituted, as a shell expands an
    unquoted heredoc (quotes kept). Raises ValueError on a bad substitution."""
    return _Heredoc(text, env, "\\").run() if "$" in text or "\\" in text else text


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Split at unquoted whitespace, keeping quotes and escapes in the words (for
    ``KEY=VALUE`` lists: each side is then processed with ``expand``). An escape or
    quote protects whitespace; a quoted empty word is kept."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    started = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if quote:
            word.append(c)
            if c == quote:
                quote = ""
            elif c == escape and quote != "'" and i + 1 < n:
                word.append(text[i + 1])
                i += 1
        elif c.isspace():
            if started:
                words.append("".join(word))
                word, started = [], False
        else:
            started = True
            word.append(c)
            if c in ("'", '"'):
                quote = c
            elif c == escape and i + 1 < n:
                word.append(text[i + 1])
                i += 1
        i += 1
    if started:
        words.append("".join(word))
    return words


def split_flags(text: str) -> tuple[list[tuple[str, str | None]], str]:
    """Leading ``--name[=value]`` flags (quotes and backslashes in them processed, a
    lone ``--`` ends them) and the rest of the text, left-stripped."""
    flags: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if not text.startswith("--", i):
            return flags, text[i:]
        word: list[str] = []
        quote = ""
        while i < n and (quote or not text[i].isspace()):
            c = text[i]
            if quote and c == quote:
                quote = ""
            elif not quote and c in ("'", '"'):
                quote = c
            elif c == "\\" and i + 1 < n:
                i += 1
                word.append(text[i])
            else:
                word.append(c)
            i += 1
        if quote:
            raise ValueError(f"unterminated quote in flag {''.join(word)!r}")
        token = "".join(word)
        if token == "--":
            while i < n and text[i].isspace():
                i += 1
            return flags, text[i:]
        name, eq, value = token[2:].partition("=")
        flags.append((name, value if eq else None))


def json_array(text: str) -> tuple[str, ...] | None:
    """The exec form: a JSON array of strings, or None when ``text`` is not JSON (so
    it is the shell form). Raises ValueError for a JSON array holding non-strings."""
    text = text.strip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise ValueError("the JSON form must be an array of strings")
    return tuple(value)


def key_values(text: str, escape: str, env: Mapping[str, str], what: str) -> Pairs:
    """``K=V K2="v 2" ...`` or the legacy ``K value with spaces``, substituted.
    Raises ValueError with a message that starts with ``what``."""

    def sub(word: str) -> str:
        try:
            return expand(word, env, escape)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None

    words = split_words(text, escape)
    if not words:
        raise ValueError(f"{what} needs at least one KEY=VALUE")
    if "=" not in words[0]:
        parts = text.strip().split(None, 1)
        if len(parts) < 2:
            raise ValueError(f'{what} needs a value for "{sub(parts[0])}"')
        return ((sub(parts[0]), sub(parts[1])),)
    pairs: list[tuple[str, str]] = []
    for w in words:
        if "=" not in w:
            raise ValueError(f'{what}: "{w}" is not of the form KEY=VALUE')
        k, _, v = w.partition("=")
        key = sub(k)
        if not key:
            raise ValueError(f'{what}: empty name in "{w}"')
        pairs.append((key, sub(v)))
    return tuple(pairs)


ESCAPE_DIRECTIVE = re.compile(r"^\s*#\s*escape\s*=\s*(\\|`)\s*$", re.I)
SYNTAX_DIRECTIVE = re.compile(r"^\s*#\s*syntax\s*=", re.I)


def escape_char(text: str) -> str:
    """The escape character set by a leading ``# escape=`` directive (default ``\\``)."""
    for line in text.splitlines():
        m = ESCAPE_DIRECTIVE.match(line)
        if m:
            return m.group(1)
        if not SYNTAX_DIRECTIVE.match(line):
            break
    return "\\"
