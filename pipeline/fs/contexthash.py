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


# contexts share this many cache files: a one-app build reads and writes about 1/SHARDS
# of a fleet's rows, a build-all opens at most SHARDS files
SHARDS = 64


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
    rename), so concurrent processes each leave a whole cache file.
    """

    RACY_WINDOW_NS = 2_000_000_000

    def __init__(
        self,
        cache_file: Path | None = None,
        *,
        racy_window_ns: int | None = None,
        shard_dir: Path | None = None,
    ):
        """One cache file (``cache_file``), or with ``shard_dir`` the rows of each COPY
        context in one of ``SHARDS`` files under it (by a hash of the context's path),
        read only when a COPY of that context is hashed and written only when its rows
        changed (so a one-app build of a 1,000-app fleet reads and writes about 1/64 of
        the fleet's rows, not all of them)."""
        self.cache_file = cache_file
        self.shard_dir = shard_dir
        self.racy_window_ns = self.RACY_WINDOW_NS if racy_window_ns is None else racy_window_ns
        self.files_hashed = 0
        self.files_cached = 0
        self.bytes_hashed = 0
        self._shards: dict[Path, dict[str, tuple[int, int, int, int, str]]] = {}
        self._dirty_shards: set[Path] = set()
        self._current: Path | None = cache_file
        self._cache: dict[str, tuple[int, int, int, int, str]] = {}
        if cache_file is not None and shard_dir is None:
            self._cache = self._shards[cache_file] = _load_cache(cache_file)

    @property
    def _dirty(self) -> bool:
        return bool(self._dirty_shards)

    def _use_shard(self, context: Path) -> None:
        """Point the cache at the shard of ``context`` (loading it on first use)."""
        if self.shard_dir is None:
            return
        digest = hashlib.sha256(fs_bytes(os.path.abspath(context))).digest()
        path = self.shard_dir / f"{digest[0] % SHARDS:02x}.json"
        if path not in self._shards:
            self._shards[path] = _load_cache(path)
        self._current = path
        self._cache = self._shards[path]

    def save(self) -> None:
        """Write the cache files that changed, each atomically (temp file in the same
        directory, rename). No-op without a cache file."""
        for path in sorted(self._dirty_shards):
            _save_cache(path, self._shards[path])
        self._dirty_shards.clear()

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
        self._use_shard(context)
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
            if self._current is not None:
                self._dirty_shards.add(self._current)
        return digest


def _load_cache(path: Path) -> dict[str, tuple[int, int, int, int, str]]:
    """A saved cache file, or an empty cache when it is missing, corrupt or of another
    format version."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != CACHE_FORMAT or data.get("version") != CACHE_VERSION:
            return {}
        out: dict[str, tuple[int, int, int, int, str]] = {}
        for name, row in data["files"].items():
            size, mtime, ino, ctime, digest = row
            if not all(type(v) is int for v in (size, mtime, ino, ctime)):
                return {}
            if not isinstance(digest, str) or not isinstance(name, str):
                return {}
            out[name] = (size, mtime, ino, ctime, digest)
        return out
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _save_cache(path: Path, rows: dict[str, tuple[int, int, int, int, str]]) -> None:
    """Write one cache file atomically (temp file, rename); a read-only store goes
    without. Not fsynced: the cache only saves time, and what a crash can leave (the
    old file, or a torn one that reads as empty) is never a wrong answer, since a row
    is used only while the file's whole stat fingerprint matches it."""
    directory = path.parent
    body = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "files": {p: list(v) for p, v in sorted(rows.items())},
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(body, f, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
