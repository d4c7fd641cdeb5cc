"""Parsing spec text into a :class:`~pipeline.hcl.values.File`, with a cache.

The tree side of parsing lives in :mod:`pipeline.hcl.syntax` (the only importer of
``hcl2`` and ``lark``), loaded on the first real parse: a command whose parsed specs all
come from the cache never loads the grammar (about 0.1 s with python-hcl2's grammar
cache present). Only :func:`parse_file` reads a file.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pipeline.errors import Location
from pipeline.hcl.values import Attribute, Block, Expr, File, Literal

_NOWHERE = Location("")

# --------------------------------------------------------------------------- parsing


def parse(text: str, path: str) -> File:
    """Parse HCL text. ``path`` is what locations show. Raises SpecError on bad syntax,
    on a duplicate attribute in one body, and on interpolation in a block label.

    The parser (python-hcl2 and lark, about 45 ms to import) is loaded on first use
    only, so a command whose parsed specs all come from the cache never loads it."""
    from pipeline.hcl import syntax

    return syntax.parse(text, path)


class ParseCache(Protocol):
    """Storage for parsed files between processes, owned by the caller (e.g. a
    directory in the store). Keys are hex digests; values are opaque bytes."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...


# Bump when the classes of a parsed File change, so stale cache entries are never used.
PARSE_FORMAT = 2


def _hcl2_version() -> str:
    """python-hcl2's version file, read without importing the package (and lark)."""
    import importlib.util

    spec = importlib.util.find_spec("hcl2")
    if spec is None or spec.origin is None:
        return "unknown"
    try:
        return (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return "unknown"


def parse_file(path: Path, display: str | None = None, cache: ParseCache | None = None) -> File:
    """Read and parse one file; locations show ``display`` (default ``str(path)``).

    With ``cache``, a file whose text, display path, python-hcl2 version and
    PARSE_FORMAT were seen before is unpickled instead of parsed (about ten times
    faster than lark); a miss parses and stores. An unreadable entry counts as a miss.
    The cache holds pickles, so it must be as trusted as the spec files themselves.
    """
    shown = display or str(path)
    text = read_text(path, shown)
    if cache is None:
        return parse(text, shown)
    digest = hashlib.sha256()
    for part in (str(PARSE_FORMAT), _hcl2_version(), shown, text):
        digest.update(part.encode())
        digest.update(b"\0")
    key = digest.hexdigest()
    data = cache.get(key)
    if data is not None:
        try:
            cached = pickle.loads(data)
        except Exception:
            cached = None
        if isinstance(cached, File) and cached.path == shown:
            return cached
    parsed = parse(text, shown)
    cache.put(key, pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL))
    return parsed


def parse_file_part(
    path: Path,
    display: str,
    cache: ParseCache,
    keep: Callable[[Attribute | Block], bool],
) -> File:
    """``parse_file`` keeping only the top-level items ``keep`` accepts (it sees a
    stand-in with the item's type and labels only, never its body).

    The cache holds each top-level item as its own pickle, beside its type and
    labels, so the items not kept are never unpickled: loading one app out of a file
    of 100 costs about one app. A miss parses the whole file and stores the parts.
    """
    text = read_text(path, display)
    digest = hashlib.sha256()
    for part in (str(PARSE_FORMAT), "parts", _hcl2_version(), display, text):
        digest.update(part.encode())
        digest.update(b"\0")
    key = digest.hexdigest()
    parts: list[tuple[str, tuple[str, ...], bytes]] | None = None
    data = cache.get(key)
    if data is not None:
        try:
            loaded = pickle.loads(data)
            if isinstance(loaded, list):
                parts = loaded
        except Exception:
            parts = None
    if parts is None:
        parsed = parse(text, display)
        parts = [
            (
                item.type if isinstance(item, Block) else "",
                item.labels if isinstance(item, Block) else (item.name,),
                pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL),
            )
            for item in parsed.body
        ]
        cache.put(key, pickle.dumps(parts, protocol=pickle.HIGHEST_PROTOCOL))
    body: list[Attribute | Block] = []
    for kind, labels, blob in parts:
        stand_in: Attribute | Block
        if kind:
            stand_in = Block(kind, tuple(labels), (), _NOWHERE)
        else:
            stand_in = Attribute(labels[0], Literal(_NOWHERE, None), _NOWHERE)
        if keep(stand_in):
            item = pickle.loads(blob)
            if not isinstance(item, Attribute | Block):
                raise TypeError(f"{display}: a cached part is not a block")
            body.append(item)
    return File(display, tuple(body))


def read_text(path: Path, shown: str) -> str:
    """A spec file's text: at most ``Limits.spec_bytes`` read, UTF-8 (a BOM dropped);
    SpecError located at ``shown`` for an unreadable, oversized or non-UTF-8 file."""
    from pipeline.errors import Location, SpecError
    from pipeline.hcl import guard
    from pipeline.limits import current

    limits = current()
    try:
        with path.open("rb") as f:
            data = f.read(limits.spec_bytes + 1)
            size = max(len(data), os.fstat(f.fileno()).st_size)
    except OSError as exc:
        raise SpecError(Location(shown), f"cannot read: {exc.strerror}") from None
    guard.check_size(size if len(data) > limits.spec_bytes else len(data), shown, limits)
    return guard.decode(data, shown)


def parse_expression(text: str, path: str = "<expr>") -> Expr:
    """Parse one expression (``1 + var.x``); for tests and command-line values."""
    from pipeline.hcl import syntax

    return syntax.parse_expression(text, path)
