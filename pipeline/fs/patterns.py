"""Ignore-file patterns and COPY globs, as pure matchers.

``.pipelineignore`` files are compiled with pathspec's gitignore rules;
``.dockerignore`` patterns (marked by a first element :data:`DOCKER_RULES`) follow
Docker's: each pattern is cleaned (``./`` and a leading ``/`` dropped) and anchored at
the context root, ``*`` and ``?`` stay within one component, ``**`` spans any number,
a pattern matching a directory also matches everything below it, and a later ``!``
pattern re-includes. COPY sources use Go's ``filepath.Match`` syntax one path
component at a time, as Docker does.
"""

from __future__ import annotations

import functools
import posixpath
import re

import pathspec

from pipeline.errors import SpecError

# ---------------------------------------------------------------------------
# ignore patterns


DOCKER_RULES = "#docker-rules"
"""The first element of an ignore-pattern tuple read from a ``.dockerignore``."""


class _Ignore:
    """Compiled ignore patterns, matched against context-relative posix paths."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.docker: tuple[tuple[bool, re.Pattern[str]], ...] | None = None
        if patterns and patterns[0] == DOCKER_RULES:
            patterns = patterns[1:]
            self.docker = tuple(d for d in map(_docker_pattern, patterns) if d is not None)
        else:
            self.spec = pathspec.PathSpec.from_lines(_pattern_factory(), patterns)
        self.has_negation = any(p.startswith("!") for p in patterns)
        self.empty = not patterns

    def ignored(self, rel: str, is_dir: bool) -> bool:
        if self.empty or not rel:
            return False
        if self.docker is not None:
            return _docker_ignored(self.docker, rel)
        return bool(self.spec.match_file(rel + "/" if is_dir else rel))


def _docker_pattern(text: str) -> tuple[bool, re.Pattern[str]] | None:
    """``(exclusion, regex)`` for one .dockerignore line (None when it cleans to nothing)."""
    exclusion = text.startswith("!")
    text = text[1:].strip() if exclusion else text
    text = posixpath.normpath(text) if text else ""
    text = text.lstrip("/") if len(text) > 1 else text
    if text in ("", ".", "/"):
        return None
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "*" and text.startswith("**", i):
            i += 2
            if text.startswith("/", i):  # "**/" is zero or more whole components
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(text[i + 1]))
            i += 2
        elif c == "[":
            end = text.find("]", i + 2)
            if end < 0:
                raise ValueError(f"bad pattern {text!r}")
            body = text[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return exclusion, re.compile("".join(out) + r"\Z", re.DOTALL)


def _docker_ignored(patterns: tuple[tuple[bool, re.Pattern[str]], ...], rel: str) -> bool:
    """Docker's rule: the last pattern that matches the path, or one of its parent
    directories, decides; an exclusion (``!``) re-includes."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    matched = False
    for exclusion, regex in patterns:
        if exclusion != matched:
            continue
        if any(regex.match(p) for p in prefixes):
            matched = not exclusion
    return matched


def _pattern_factory() -> str:
    """pathspec's gitignore pattern name: ``gitignore`` (1.x), else the older
    ``gitwildmatch`` (deprecated in 1.x, same syntax)."""
    try:
        pathspec.util.lookup_pattern("gitignore")
    except KeyError:  # pragma: no cover - pathspec < 1.0
        return "gitwildmatch"
    return "gitignore"


@functools.lru_cache(maxsize=256)
def compile_ignore(context: str, patterns: tuple[str, ...]) -> _Ignore:
    try:
        return _Ignore(patterns)
    except ValueError as exc:  # GitIgnorePatternError is a ValueError
        raise SpecError(None, f"{context}: bad ignore pattern: {exc}") from None


# ---------------------------------------------------------------------------
# globs (Go filepath.Match, one path component)

_GLOB_META = re.compile(r"[*?\[\\]")


def is_glob(component: str) -> bool:
    """True when ``component`` has a glob metacharacter (``* ? [`` or ``\\``)."""
    return _GLOB_META.search(component) is not None


@functools.lru_cache(maxsize=1024)
def glob_regex(component: str) -> re.Pattern[str]:
    """A regex equivalent to Go's ``filepath.Match(component, name)`` for one
    path component. Raises ValueError for a malformed pattern (as Go's
    ``ErrBadPattern``)."""
    out: list[str] = []
    i, n = 0, len(component)

    def class_char(j: int) -> tuple[str, int]:
        if j >= n or component[j] in "-]":
            raise ValueError(f"bad glob pattern {component!r}")
        if component[j] == "\\":
            if j + 1 >= n:
                raise ValueError(f"bad glob pattern {component!r}")
            return component[j + 1], j + 2
        return component[j], j + 1

    while i < n:
        c = component[i]
        if c == "*":
            out.append(".*")
            i += 1
        elif c == "?":
            out.append(".")
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                raise ValueError(f"bad glob pattern {component!r}")
            out.append(re.escape(component[i + 1]))
            i += 2
        elif c == "[":
            i += 1
            negate = i < n and component[i] == "^"
            if negate:
                i += 1
            items: list[str] = []
            while True:
                if i < n and component[i] == "]" and items:
                    i += 1
                    break
                lo, i = class_char(i)
                if i < n and component[i] == "-":
                    hi, i = class_char(i + 1)
                    if lo > hi:
                        raise ValueError(f"bad glob pattern {component!r}")
                    items.append(f"{re.escape(lo)}-{re.escape(hi)}")
                else:
                    items.append(re.escape(lo))
            out.append("[" + ("^" if negate else "") + "".join(items) + "]")
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)
