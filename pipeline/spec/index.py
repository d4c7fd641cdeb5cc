"""Which spec file defines which block, and what each block may refer to: enough to load
only the files (and evaluate only the blocks) that a target's graph reaches.

The index of a specs directory is a JSON value kept in the store's cache next to the
parse cache (the caller owns the storage). Each file's entry is keyed by its stat
fingerprint (size, mtime_ns, inode, ctime_ns), like the context stat cache: a file
whose fingerprint is unchanged is not read again; any change re-indexes that file.

Contracts:

* Conservative: a block's references are every ``image.X``/``app.X``/``group.X``
  traversal in it and every literal string in it (a string may name a block, as
  ``inherits = ["base"]`` or group ``targets`` do). Files that hold anything but
  ``image``/``app``/``group`` blocks (variables, locals, bake blocks) are always
  loaded, and their references count for every target.
* :func:`closure` answers None whenever the index cannot decide (a name it does not
  know, e.g. one a ``matrix`` makes; a block defined twice; a bake project; a
  traversal to an unknown block): the caller then loads the whole directory, which
  also gives the whole directory's error messages.
* A partial load that still fails with a SpecError must be retried as a whole load by
  the caller (a reference the index could not see, e.g. a name computed at run time).
  Pure apart from :func:`file_stat`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.hcl.files import ParseCache, parse_file
from pipeline.hcl.values import Block, File, GetAttr, Literal, Variable

INDEX_FORMAT = 1
BLOCK_KINDS = ("image", "app", "group")

# an index row per file: {"stat": [...], "global": bool, "blocks": [[kind, name, refs, strings]]}
FileEntry = dict[str, Any]


def file_stat(path: Path) -> list[int] | None:
    """The stat fingerprint the index keys a file by, or None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def index_file(parsed: File, stat: Sequence[int]) -> FileEntry:
    """The index entry of one parsed file (pure)."""
    blocks: list[list[Any]] = []
    is_global = False
    for item in parsed.body:
        if not isinstance(item, Block) or item.type not in BLOCK_KINDS or len(item.labels) != 1:
            is_global = True
        refs: set[tuple[str, str]] = set()
        strings: set[str] = set()
        _walk(item, refs, strings)
        name = item.labels[0] if isinstance(item, Block) and len(item.labels) == 1 else ""
        kind = item.type if isinstance(item, Block) else "attribute"
        blocks.append([kind, name, [list(r) for r in sorted(refs)], sorted(strings)])
    return {"stat": list(stat), "global": is_global, "blocks": blocks}


def _walk(node: object, refs: set[tuple[str, str]], strings: set[str]) -> None:
    """Collect block traversals and literal strings anywhere below ``node`` (the
    literal parts of templates count as strings)."""
    stack: list[object] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings.add(item)  # a template's literal part (names are fields, skipped below)
        elif isinstance(item, tuple | list):
            stack.extend(item)
        elif isinstance(item, Literal):
            if isinstance(item.value, str):
                strings.add(item.value)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            if isinstance(item, GetAttr):
                _traversal(item, refs)
            for f in dataclasses.fields(item):
                value = getattr(item, f.name)
                if not isinstance(value, str | int | float | bool | None) and f.name not in _SKIP:
                    stack.append(value)


def _traversal(item: GetAttr, refs: set[tuple[str, str]]) -> None:
    if isinstance(item.target, Variable) and item.target.name in BLOCK_KINDS:
        refs.add((item.target.name, item.name))


_SKIP = frozenset({"loc", "name_loc", "labels"})


def closure(
    index: Mapping[str, FileEntry], names: Iterable[str]
) -> tuple[list[str], set[tuple[str, str]]] | None:
    """The files to load (index keys, in sorted order) and the blocks to evaluate for
    the command-line ``names``, resolved as :meth:`Workspace.select` resolves them
    (group, ``kind.name`` id, app, image); None when the index cannot decide."""
    where: dict[tuple[str, str], str] = {}
    entries: dict[tuple[str, str], list[Any]] = {}
    global_files: list[str] = []
    for path, entry in index.items():
        if entry["global"]:
            global_files.append(path)
        for row in entry["blocks"]:
            kind, name = row[0], row[1]
            if kind in ("target", "function"):
                return None  # a bake project: its own loader
            if kind in BLOCK_KINDS:
                if (kind, name) in where:
                    return None  # defined twice: the whole load reports it
                where[(kind, name)] = path
                entries[(kind, name)] = row
    todo: list[tuple[str, str]] = []
    for name in names:
        found = _resolve_name(name, where)
        if found is None:
            return None
        todo.append(found)
    for path in global_files:  # locals and variables may refer to blocks: always counted
        for row in index[path]["blocks"]:
            if row[0] not in BLOCK_KINDS:
                todo.extend(_row_refs(row, where))
                if any(tuple(r) not in where for r in row[2]):
                    return None
    wanted: set[tuple[str, str]] = set()
    while todo:
        key = todo.pop()
        if key in wanted:
            continue
        wanted.add(key)
        row = entries[key]
        if any(tuple(r) not in where for r in row[2]):
            return None
        todo.extend(_row_refs(row, where))
    files = sorted({*global_files, *(where[k] for k in wanted)})
    return files, wanted


def _resolve_name(name: str, where: Mapping[tuple[str, str], str]) -> tuple[str, str] | None:
    if ("group", name) in where:
        return ("group", name)
    kind, _, rest = name.partition(".")
    if kind in ("app", "image") and (kind, rest) in where:
        return (kind, rest)
    for kind in ("app", "image"):
        if (kind, name) in where:
            return (kind, name)
    return None


def _row_refs(row: Sequence[Any], where: Mapping[tuple[str, str], str]) -> list[tuple[str, str]]:
    out = [(str(k), str(n)) for k, n in row[2] if (k, n) in where]
    for text in row[3]:
        prefix, _, rest = text.partition(".")
        candidates = [(k, text) for k in BLOCK_KINDS]
        if prefix in BLOCK_KINDS:
            candidates.append((prefix, rest))
        out.extend(c for c in candidates if c in where)
    return out


def spec_paths(specs_dir: Path) -> list[Path]:
    """The spec files of a directory, as :func:`pipeline.spec.loader.load_fleet` reads
    them (``*.hcl`` directly inside, sorted)."""
    return sorted(p for p in specs_dir.glob("*.hcl") if p.is_file())


def refresh(
    specs_dir: Path, old: Mapping[str, FileEntry], parse_cache: ParseCache | None
) -> tuple[dict[str, FileEntry], dict[str, File]]:
    """The index of ``specs_dir`` now: entries of ``old`` whose file fingerprint is
    unchanged are kept without reading the file; the others are parsed (through
    ``parse_cache``) and re-indexed. Also returns the files parsed on the way (by
    display path). Raises SpecError as parsing does."""
    out: dict[str, FileEntry] = {}
    parsed: dict[str, File] = {}
    for path in spec_paths(specs_dir):
        shown = str(specs_dir / path.name)
        stat = file_stat(path)
        entry = old.get(shown)
        if stat is not None and entry is not None and entry.get("stat") == stat:
            out[shown] = entry
            continue
        parsed[shown] = parse_file(path, shown, parse_cache)
        out[shown] = index_file(parsed[shown], stat or [])
    return out, parsed


def decode(data: bytes | None) -> dict[str, FileEntry]:
    """A stored index (or an empty one for a missing, corrupt or older entry)."""
    if not data:
        return {}
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(value, dict) or value.get("format") != INDEX_FORMAT:
        return {}
    files = value.get("files")
    if not isinstance(files, dict):
        return {}
    for entry in files.values():
        if not isinstance(entry, dict) or not {"stat", "global", "blocks"} <= entry.keys():
            return {}
    return files


def encode(index: Mapping[str, FileEntry]) -> bytes:
    return json.dumps({"format": INDEX_FORMAT, "files": index}, sort_keys=True).encode()
