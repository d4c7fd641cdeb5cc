"""A Dockerfile's text as instructions, by Docker's rules: comments and blank lines
dropped, line continuations (the escape character at the end of a line) joined, blank
and comment lines inside a continuation skipped, and heredocs (``<<EOF``, ``<<-EOF``,
``<<"EOF"``; several on one line) read after RUN, COPY and ADD lines. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEREDOC_WORDS = ("RUN", "COPY", "ADD")
_MARKER = re.compile(r"""(?<![<\w])\d*<<(-?)(["']?)([A-Za-z_][A-Za-z0-9_.-]*)\2(?=[\s;&|>)]|$)""")


@dataclass(frozen=True)
class Heredoc:
    """One here-document: its ``name``, its ``body`` (every line ending in "\\n"),
    and whether variables in it are expanded (an unquoted name)."""

    name: str
    body: str
    expand: bool


@dataclass(frozen=True)
class Line:
    """One instruction: its word (upper case), the rest of its logical line, the
    0-based physical line it starts on, and its heredocs in order."""

    word: str
    value: str
    line: int
    heredocs: tuple[Heredoc, ...] = ()


def heredoc_markers(text: str) -> list[tuple[str, bool, bool]]:
    """``(name, strip_tabs, expand)`` for each ``<<NAME`` marker in ``text``."""
    return [(m.group(3), m.group(1) == "-", not m.group(2)) for m in _MARKER.finditer(text)]


def split_lines(text: str, escape: str = "\\") -> list[Line]:
    """The instructions of a Dockerfile's text. A heredoc that never ends takes the
    rest of the file (as BuildKit does)."""
    physical = text.splitlines()
    out: list[Line] = []
    i, n = 0, len(physical)
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")
    while i < n:
        raw = physical[i].lstrip()
        start = i
        i += 1
        if not raw or raw.startswith("#"):
            continue
        logical = raw
        while continuation.search(logical) and i <= n:
            logical = continuation.sub("", logical)
            while i < n and (not physical[i].strip() or physical[i].lstrip().startswith("#")):
                i += 1  # blank and comment lines inside a continuation are skipped
            if i >= n:
                break
            logical += physical[i]
            i += 1
        word, _, value = logical.strip().partition(" ")
        if not value and "\t" in word:
            word, _, value = word.partition("\t")
        word = word.upper()
        value = value.strip()
        docs: list[Heredoc] = []
        if word in HEREDOC_WORDS:
            for name, strip_tabs, expand in heredoc_markers(value):
                body: list[str] = []
                while i < n:
                    line = physical[i]
                    i += 1
                    if strip_tabs:
                        line = line.lstrip("\t")
                    if line == name:
                        break
                    body.append(line + "\n")
                docs.append(Heredoc(name, "".join(body), expand))
        out.append(Line(word, value, start, tuple(docs)))
    return out
