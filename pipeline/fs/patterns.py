"""Ignore-file patterns and COPY globs, as pure matchers.

Ignore files (``.pipelineignore``, ``.dockerignore``) are compiled with pathspec's
gitignore rules; COPY sources use Go's ``filepath.Match`` syntax one path component
at a time, as Docker does.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from pipeline.errors import SpecError

# ---------------------------------------------------------------------------
# ignore patterns


class _Ignore:
    """Compiled ignore patterns, matched against context-relative posix paths."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.spec: Any = None
        if patterns:  # pathspec (about 30 modules) is loaded only for real patterns
            import pathspec

            self.spec = pathspec.PathSpec.from_lines(_pattern_factory(), patterns)
        self.has_negation = any(p.startswith("!") for p in patterns)
        self.empty = not patterns

    def ignored(self, rel: str, is_dir: bool) -> bool:
        if self.empty or not rel:
            return False
        return bool(self.spec.match_file(rel + "/" if is_dir else rel))


def _pattern_factory() -> str:
    """pathspec's gitignore pattern name: ``gitignore`` (1.x), else the older
    ``gitwildmatch`` (deprecated in 1.x, same syntax)."""
    import pathspec

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
