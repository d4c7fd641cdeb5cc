"""Build contexts: ignore files, selecting what a COPY takes, and content digests.

Reads files only; never writes outside its own stat-cache file.
"""

from __future__ import annotations

from pathlib import Path

IGNORE_FILES = (".pipelineignore", ".dockerignore")


def read_ignore(context: Path) -> tuple[str, ...]:
    """Patterns of the context's ignore file: ``.pipelineignore`` if present, else
    ``.dockerignore``, else none. Blank lines and ``#`` comments are dropped."""
    for name in IGNORE_FILES:
        path = context / name
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            return tuple(s for s in (ln.strip() for ln in lines) if s and not s.startswith("#"))
    return ()
