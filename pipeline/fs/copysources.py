"""What a COPY copies: :class:`SourceTree` values, one per top-level source after
wildcard expansion, from a build context's selection (:func:`entry_trees`) or from
another image's layer stack (:func:`image_trees`, for ``COPY --from``). Pure apart from
reading the layer dirs it is given.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline.errors import PipelineError
from pipeline.fs.layerstack import LayerStack, LayerStackError, join_parts, split_path
from pipeline.fs.patterns import glob_regex, is_glob

Parts = tuple[str, ...]
Meta = tuple[int, int, int, int | None]  # mode bits, uid, gid, mtime_ns (None: leave)


class CopyError(PipelineError):
    """A COPY cannot be done as asked (missing source, file where a dir is needed, ...)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ContextEntry(Protocol):
    """What the copier reads of a ``pipeline.context.Entry`` (see ``context.select``)."""

    @property
    def rel(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def kind(self) -> str: ...  # "file" | "dir" | "symlink"
    @property
    def mode(self) -> int: ...  # permission bits
    @property
    def target(self) -> str: ...
    @property
    def top(self) -> bool: ...
    @property
    def source(self) -> str: ...


@dataclass(frozen=True, slots=True)
class SourceNode:
    """One file, directory or symlink to copy, as it was selected (never followed).

    ``rel`` is its "/"-separated path below the top-level source ("" for the top-level
    object itself); ``mode`` is a full st_mode (type and permission bits); ``host`` is
    the host path holding its bytes (regular file); ``target`` is a symlink's link text
    as selected. ``uid``/``gid`` are the owner the copy gets when there is no chown;
    ``mtime_ns`` None leaves the time of writing.
    """

    rel: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int | None
    host: str
    target: str = ""

    @classmethod
    def of(cls, rel: str, st: os.stat_result, host: str, keep_owner: bool) -> SourceNode:
        """The node for ``st`` (an lstat of ``host``); owner root:root unless
        ``keep_owner``. Reads a symlink's target."""
        uid, gid = (st.st_uid, st.st_gid) if keep_owner else (0, 0)
        target = os.readlink(host) if stat.S_ISLNK(st.st_mode) else ""
        return cls(rel, st.st_mode, uid, gid, st.st_mtime_ns, host, target)


@dataclass(frozen=True, slots=True)
class SourceTree:
    """One top-level COPY source, its nodes parents before children.

    When ``nodes[0].rel`` is "" it is the source itself: a file or symlink source has
    just that node; a directory source has it, then its contents. A directory tree may
    also come without a root node (``context.select`` does not report the directory
    itself, and an empty directory gives no nodes at all): then a destination
    directory the image lacks is created 0755 root:root. ``name`` is the name a file
    source gets inside a directory destination; ``origin`` names the source in messages.
    """

    name: str
    origin: str
    nodes: tuple[SourceNode, ...]

    @property
    def is_dir(self) -> bool:
        return not self.nodes or self.nodes[0].rel != "" or stat.S_ISDIR(self.nodes[0].mode)

    @property
    def root(self) -> SourceNode | None:
        return self.nodes[0] if self.nodes and self.nodes[0].rel == "" else None


# -- sources -----------------------------------------------------------------------------

_KINDS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}


def _entry_node(entry: ContextEntry, rel: str) -> SourceNode:
    try:
        kind = _KINDS[entry.kind]
    except KeyError:
        raise CopyError(str(entry.path), f"unsupported entry kind {entry.kind!r}") from None
    stat_key = getattr(entry, "stat_key", None)
    mtime_ns = stat_key[1] if stat_key and stat_key[1] else None
    return SourceNode(
        rel, kind | stat.S_IMODE(entry.mode), 0, 0, mtime_ns, str(entry.path), entry.target
    )


def entry_trees(entries: Sequence[ContextEntry]) -> list[SourceTree]:
    """Source trees for what ``context.select`` returned for one COPY (owners
    root:root). A ``top`` entry (a file source) is a file tree; each run of other
    entries from one source is a directory tree without a root node. No entries at
    all (an empty directory was selected) is one empty directory tree."""
    trees: list[SourceTree] = []
    run: list[SourceNode] = []
    run_source: str | None = None

    def flush() -> None:
        nonlocal run, run_source
        if run_source is not None:
            trees.append(SourceTree("", run_source, tuple(run)))
        run, run_source = [], None

    for entry in entries:
        if entry.top:
            flush()
            trees.append(SourceTree(entry.rel, entry.source, (_entry_node(entry, ""),)))
            continue
        if run_source is not None and entry.source != run_source:
            flush()
        run_source = entry.source
        run.append(_entry_node(entry, entry.rel))
    flush()
    return trees or [SourceTree("", "", ())]


def _expand(parts: Parts, children: Callable[[Parts], list[str]]) -> list[Parts]:
    """Every path matching ``parts``, whose components may be globs in Go
    ``filepath.Match`` style (one component each, as ``context.glob_regex``), sorted."""
    found: list[Parts] = [()]
    wild = False
    for pattern in parts:
        if is_glob(pattern):
            wild = True
            rx = glob_regex(pattern)
            found = [(*p, n) for p in found for n in children(p) if rx.fullmatch(n)]
        elif wild:
            found = [(*p, pattern) for p in found if pattern in children(p)]
        else:
            found = [(*p, pattern) for p in found]
    return sorted(found)


def image_trees(stack: LayerStack, sources: Sequence[str]) -> list[SourceTree]:
    """Source trees for ``sources``: paths in the image ``stack`` (``COPY --from``),
    relative ones from ``/``, globs allowed. Symlinks on the way are followed within
    that image's root; a symlink that is the source itself is copied as a symlink
    (unless written with a trailing "/", which names the directory it points to).
    Owners are kept (as BuildKit does for ``--from``) unless the COPY has a chown."""

    def children(parts: Parts) -> list[str]:
        try:
            return stack.listdir(stack.resolve(join_parts(parts)))
        except LayerStackError:
            return []

    trees: list[SourceTree] = []
    for source in sources:
        parts = split_path(source)
        wild = any(is_glob(p) for p in parts)
        if wild:
            try:
                matches = _expand(parts, children)
            except ValueError as exc:
                raise CopyError(source, str(exc)) from None
            if not matches:
                raise CopyError(source, "no source files match in the source image")
        else:
            matches = [parts]
        for match in matches:
            # "link/" names the directory the link points to, as in POSIX.
            follow = source.endswith(("/", "/.")) and not wild
            path = stack.resolve(join_parts(match), follow_last=follow)
            try:
                entries = list(stack.walk(path))
            except LayerStackError:
                raise CopyError(path, "no such file or directory in the source image") from None
            nodes = tuple(
                SourceNode.of(
                    e.path[len(path) :].lstrip("/"), e.stat, os.fspath(e.host), keep_owner=True
                )
                for e in entries
            )
            trees.append(SourceTree(posixpath.basename(path), path, nodes))
    return trees
