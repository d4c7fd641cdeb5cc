"""Content digests of COPY sources, with a persistent stat cache.

:class:`ContextHasher` digests what a COPY would copy (paths, types, modes, bytes,
symlink targets; never mtimes) and remembers each file's digest by its stat key, so an
unchanged context is digested without reading it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.fs.context import (
    CACHE_FORMAT,
    CACHE_VERSION,
    CHUNK,
    DIGEST_FORMAT,
    ContextError,
    Entry,
    fs_bytes,
    layout,
    select,
    stat_key_of,
)

# ---------------------------------------------------------------------------
# content digests with a stat cache


def manifest_of(
    entries: Sequence[Entry], file_digest: Callable[[Entry], str]
) -> tuple[FileDigest, ...]:
    """One row per path of the destination layout of ``select``'s entries (sorted by
    ``rel``), each file's ``sha256:<hex>`` from ``file_digest``. Pure."""
    rows = []
    for e in layout(entries):
        if e.kind == "file":
            payload = file_digest(e)
        elif e.kind == "symlink":
            payload = e.target
        else:
            payload = ""
        rows.append(FileDigest(e.rel, e.kind, e.mode, payload))
    return tuple(rows)


def digest_entries(entries: Sequence[Entry], file_digest: Callable[[Entry], str]) -> str:
    """The content digest of a COPY selection: the one format
    :meth:`ContextHasher.digest` keys COPY steps by and the copier checks what it copied
    against. Pure."""
    return digest_of(manifest_of(entries, file_digest))


class ContextHasher:
    """Content digests of COPY selections, with a persistent stat cache.

    The cache maps a file's absolute path to (size, mtime_ns, inode, ctime_ns,
    content digest); a file whose stat fingerprint is unchanged is not read again.
    A file whose mtime or ctime is within ``racy_window_ns`` of the moment it was
    hashed is not cached (it could change again within the timestamp granularity
    without its fingerprint changing, as git's "racily clean" entries).

    Counters, for tests and reports: ``files_hashed`` (files read), ``files_cached``
    (digests served from the cache) and ``bytes_hashed``.

    Not thread-safe; use one hasher per thread. ``save()`` is atomic (temp file,
    fsync, rename), so concurrent processes each leave a whole cache file.
    """

    RACY_WINDOW_NS = 2_000_000_000

    def __init__(self, cache_file: Path | None = None, *, racy_window_ns: int | None = None):
        self.cache_file = cache_file
        self.racy_window_ns = self.RACY_WINDOW_NS if racy_window_ns is None else racy_window_ns
        self.files_hashed = 0
        self.files_cached = 0
        self.bytes_hashed = 0
        self._cache: dict[str, tuple[int, int, int, int, str]] = self._load()
        self._dirty = False

    def _load(self) -> dict[str, tuple[int, int, int, int, str]]:
        """The saved cache, or an empty one when the file is missing, corrupt or of
        another format version."""
        if self.cache_file is None:
            return {}
        try:
            data = json.loads(self.cache_file.read_text(encoding="utf-8"))
            if data.get("format") != CACHE_FORMAT or data.get("version") != CACHE_VERSION:
                return {}
            out: dict[str, tuple[int, int, int, int, str]] = {}
            for path, row in data["files"].items():
                size, mtime, ino, ctime, digest = row
                if not all(type(v) is int for v in (size, mtime, ino, ctime)):
                    return {}
                if not isinstance(digest, str) or not isinstance(path, str):
                    return {}
                out[path] = (size, mtime, ino, ctime, digest)
            return out
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}

    def save(self) -> None:
        """Write the cache (if it changed) atomically: temp file in the same
        directory, fsync, rename, fsync of the directory. No-op without a cache file."""
        if self.cache_file is None or not self._dirty:
            return
        directory = self.cache_file.parent
        body = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "files": {p: list(v) for p, v in sorted(self._cache.items())},
        }
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                dir=directory, prefix=f".{self.cache_file.name}.", suffix=".tmp"
            )
        except OSError:
            return  # a read-only store: the cache only saves time, so go without it
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(body, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.cache_file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        self._dirty = False

    def digest(self, context: Path, sources: Sequence[str], ignore: Sequence[str]) -> str:
        """``sha256:<hex>`` of what ``COPY <sources>`` takes from ``context``.

        Covers, for each path of the destination layout (see ``layout``): its
        ``rel`` path, kind, permission bits, and the content digest of a file or the
        target of a symlink. Not mtimes, owners or inode numbers, nor the context's
        own location. The order of ``sources`` matters only where two sources give
        the same ``rel`` (the later wins). Raises as ``select`` does.
        """
        return digest_of(self.manifest(context, sources, ignore))

    def manifest(
        self, context: Path, sources: Sequence[str], ignore: Sequence[str]
    ) -> tuple[FileDigest, ...]:
        """What ``digest`` covers, one row per path of the destination layout (sorted
        by ``rel``): no file contents, only their digests. Raises as ``select`` does."""
        return manifest_of(select(context, sources, ignore), self.file_digest)

    def file_digest(self, entry: Entry) -> str:
        """``sha256:<hex>`` of a file entry's bytes, from the cache when its stat
        fingerprint is unchanged, else read in 1 MiB chunks (without following a
        symlink swapped in meanwhile)."""
        key = str(entry.path)
        hit = self._cache.get(key)
        if hit is not None and hit[:4] == entry.stat_key:
            self.files_cached += 1
            return hit[4]
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(entry.path, flags | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise ContextError(
                entry.path.parent, entry.source, f"cannot read {entry.path.name}: {exc.strerror}"
            ) from None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise ContextError(
                    entry.path.parent, entry.source, f"{entry.path.name} changed while hashing"
                )
            h = hashlib.sha256()
            size = 0
            while chunk := os.read(fd, CHUNK):
                h.update(chunk)
                size += len(chunk)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        digest = "sha256:" + h.hexdigest()
        self.files_hashed += 1
        self.bytes_hashed += size
        fingerprint = stat_key_of(after)
        newest = max(after.st_mtime_ns, after.st_ctime_ns)
        settled = newest < time.time_ns() - self.racy_window_ns
        if fingerprint == stat_key_of(before) and size == after.st_size and settled:
            self._cache[key] = (*fingerprint, digest)
            self._dirty = True
        return digest


@dataclass(frozen=True)
class FileDigest:
    """One path of a COPY's destination layout as the content digest sees it: ``rel``,
    kind (file, dir, symlink), permission bits and ``payload`` (a file's
    ``sha256:<hex>``, a symlink's target, "" for a directory)."""

    rel: str
    kind: str
    mode: int
    payload: str


def digest_of(rows: Sequence[FileDigest]) -> str:
    """The COPY content digest of a manifest (see ``ContextHasher.digest``). Pure."""
    h = hashlib.sha256()
    _field(h, DIGEST_FORMAT)
    for row in rows:
        _field(h, fs_bytes(row.rel))
        _field(h, row.kind.encode())
        _field(h, b"%o" % row.mode)
        _field(h, fs_bytes(row.payload) if row.kind == "symlink" else row.payload.encode())
    return "sha256:" + h.hexdigest()


def _field(h: hashlib._Hash, data: bytes) -> None:
    """Length-prefixed, so no two encodings of different entries collide."""
    h.update(b"%d:" % len(data))
    h.update(data)
    h.update(b",")
