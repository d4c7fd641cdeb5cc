"""Writing a layer directory as its deterministic tar stream (:func:`write_layer`) and
computing its diff_id and size without keeping the bytes (:func:`layer_info`).

Entries are scanned with ``os.scandir`` in byte order of their tar path, parents
before children, an opaque marker first among its directory's children; file data is
streamed in 1 MiB chunks. Pure apart from reading the directory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pipeline.digest import DIGEST_PREFIX, DiffID
from pipeline.errors import StoreError, UnsafePathError
from pipeline.fs.tarformat import (
    BLOCK,
    CHUNK,
    OPAQUE_MARKER,
    OPAQUE_XATTR,
    RECORD,
    UNSUPPORTED_OVERLAY,
    WHITEOUT_PREFIX,
    LayerInfo,
    entry_header,
    keep_xattr,
)

# ---------------------------------------------------------------------------------------
# Writing: the walk

_DIR, _REG, _SYMLINK, _FIFO, _WHITEOUT, _OPAQUE = range(6)


# One entry to write: (sort key, tar path, kind, path below the root, lstat, xattrs).
# The sort key is the tar path without its trailing slash, except for an opaque
# marker, whose key "DIR/" puts it first among DIR's children. Plain tuples: this is
# the hot path of every build step.
_Entry = tuple[bytes, bytes, int, bytes, os.stat_result, tuple[tuple[str, bytes], ...]]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LONG = 3072  # absolute paths longer than this are reached through a directory fd


def _scan(root: Path, root_fd: int) -> list[_Entry]:
    """Every entry below ``root`` (not root itself), validated, unsorted. Iterative;
    one directory open at a time; deep directories (long paths) are read through a
    directory fd, so depth is bounded only by the 4095-byte relative path limit."""
    where = str(root)
    rootb = os.fsencode(root)
    try:
        rst = os.lstat(rootb)
    except OSError as exc:
        raise StoreError(f"{where}: cannot read layer directory: {exc.strerror}") from None
    if not stat.S_ISDIR(rst.st_mode):
        raise StoreError(f"{where}: layer root is not a directory")
    entries: list[_Entry] = []
    root_xattrs = _read_xattrs(rootb, where, "")
    if root_xattrs[1]:
        entries.append((b"", OPAQUE_MARKER, _OPAQUE, b".", rst, ()))
    stack: list[bytes] = [b""]
    while stack:
        rel_dir = stack.pop()
        abs_dir = rootb + b"/" + rel_dir
        fd = -1
        if len(abs_dir) > _LONG:
            try:
                fd = os.open(rel_dir.rstrip(b"/"), _DIR_FLAGS, dir_fd=root_fd)
            except OSError as exc:
                raise StoreError(
                    f"{where}: {os.fsdecode(rel_dir)[:200]}: cannot read: {exc.strerror}"
                ) from None
            base = b"/proc/self/fd/%d/" % fd
        else:
            base = abs_dir
        try:
            _scan_dir(where, fd if fd >= 0 else abs_dir, base, rel_dir, entries, stack)
        finally:
            if fd >= 0:
                os.close(fd)
    return entries


def _scan_dir(
    where: str,
    handle: int | bytes,
    base: bytes,
    rel_dir: bytes,
    entries: list[_Entry],
    stack: list[bytes],
) -> None:
    with os.scandir(handle) as it:
        for e in it:
            name = os.fsencode(e.name)
            rel = rel_dir + name
            st = e.stat(follow_symlinks=False)
            mode = st.st_mode
            is_whiteout = stat.S_ISCHR(mode) and st.st_rdev == 0
            if name.startswith(WHITEOUT_PREFIX):
                raise UnsafePathError(
                    where,
                    os.fsdecode(rel),
                    "names starting with '.wh.' are reserved for whiteouts",
                )
            xattrs, opaque = _read_xattrs(base + name, where, rel)
            if stat.S_ISDIR(mode):
                entries.append((rel, rel + b"/", _DIR, rel, st, xattrs))
                if opaque:
                    marker = rel + b"/" + OPAQUE_MARKER
                    entries.append((rel + b"/", marker, _OPAQUE, rel, st, ()))
                stack.append(rel + b"/")
            elif stat.S_ISREG(mode):
                entries.append((rel, rel, _REG, rel, st, xattrs))
            elif stat.S_ISLNK(mode):
                entries.append((rel, rel, _SYMLINK, rel, st, xattrs))
            elif stat.S_ISFIFO(mode):
                entries.append((rel, rel, _FIFO, rel, st, xattrs))
            elif is_whiteout:
                wname = rel_dir + WHITEOUT_PREFIX + name
                entries.append((wname, wname, _WHITEOUT, rel, st, ()))
            else:
                what = "socket" if stat.S_ISSOCK(mode) else "device node"
                raise UnsafePathError(
                    where, os.fsdecode(rel), f"a {what} cannot be stored in a layer"
                )


def _read_xattrs(
    path: bytes, where: str, rel: bytes | str
) -> tuple[tuple[tuple[str, bytes], ...], bool]:
    """(the xattrs a layer keeps, sorted by name; whether the dir is overlay-opaque)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return (), False
        raise
    if not names:
        return (), False
    opaque = False
    kept: list[tuple[str, bytes]] = []
    for name in sorted(names):
        if name in UNSUPPORTED_OVERLAY:
            raise StoreError(
                f"{where}: {os.fsdecode(rel) or '.'}: has {name}; mount overlayfs with "
                "redirect_dir=off,metacopy=off so the upperdir is a complete diff"
            )
        if name == OPAQUE_XATTR:
            opaque = os.getxattr(path, name, follow_symlinks=False) == b"y"
        elif keep_xattr(name):
            kept.append((name, os.getxattr(path, name, follow_symlinks=False)))
    return tuple(kept), opaque


def _emit(root: Path, epoch: int, sink: Callable[[bytes | memoryview], object]) -> int:
    """Stream the deterministic tar of ``root`` into ``sink``; return its byte length.
    Files and links are opened relative to an fd of the root."""
    rootb = os.fsencode(root)
    try:
        root_fd = os.open(rootb, _DIR_FLAGS)
    except OSError as exc:
        raise StoreError(f"{root}: cannot read layer directory: {exc.strerror}") from None
    try:
        return _emit_entries(root, root_fd, epoch, sink)
    finally:
        os.close(root_fd)


def _emit_entries(
    root: Path, root_fd: int, epoch: int, sink: Callable[[bytes | memoryview], object]
) -> int:
    where = str(root)
    entries = _scan(root, root_fd)
    entries.sort(key=lambda e: e[0])
    total = 0
    first_link: dict[tuple[int, int], bytes] = {}
    buf = bytearray(CHUNK)
    for _, name, kind, path, st, xattrs in entries:
        mtime = min(st.st_mtime_ns // 1_000_000_000, epoch)
        mode, uid, gid = st.st_mode, st.st_uid, st.st_gid
        if kind == _REG:
            if st.st_nlink > 1:
                ident = (st.st_dev, st.st_ino)
                target = first_link.get(ident)
                if target is not None:
                    chunk = entry_header(name, mode, uid, gid, 0, mtime, b"1", target, xattrs)
                    sink(chunk)
                    total += len(chunk)
                    continue
                first_link[ident] = name
            size = st.st_size
            head = entry_header(name, mode, uid, gid, size, mtime, b"0", b"", xattrs)
            total += len(head) + size + (-size % BLOCK)
            _emit_file(path, root_fd, size, head, buf, sink, where, name)
            continue
        if kind == _DIR:
            chunk = entry_header(name, mode, uid, gid, 0, mtime, b"5", b"", xattrs)
        elif kind == _SYMLINK:
            target = os.readlink(path, dir_fd=root_fd)
            chunk = entry_header(name, mode, uid, gid, 0, mtime, b"2", target, xattrs)
        elif kind == _FIFO:
            chunk = entry_header(name, mode, uid, gid, 0, mtime, b"6", b"", xattrs)
        else:  # _WHITEOUT, _OPAQUE: canonical empty marker files
            chunk = entry_header(name, 0o600, 0, 0, 0, mtime, b"0")
        sink(chunk)
        total += len(chunk)
    end = b"\0" * (2 * BLOCK)
    end += b"\0" * (-(total + len(end)) % RECORD)
    sink(end)
    return total + len(end)


def _emit_file(
    path: bytes,
    root_fd: int,
    size: int,
    head: bytes,
    buf: bytearray,
    sink: Callable[[bytes | memoryview], object],
    where: str,
    name: bytes,
) -> None:
    """Header, ``size`` bytes of the file, padding; StoreError if the size is not ``size``."""

    def changed() -> StoreError:
        return StoreError(f"{where}: {os.fsdecode(name)}: file changed while being read")

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root_fd)
    except OSError as exc:
        shown = os.fsdecode(name)[:200]
        raise StoreError(f"{where}: {shown}: cannot read: {exc.strerror}") from None
    try:
        pad = b"\0" * (-size % BLOCK)
        if size < CHUNK:  # one read, one sink call
            data = os.read(fd, size + 1) if size else b""
            while len(data) < size:  # short reads are legal, if rare on regular files
                more = os.read(fd, size + 1 - len(data))
                if not more:
                    raise changed()
                data += more
            if len(data) != size:
                raise changed()
            sink(head + data + pad)
            return
        sink(head)
        view = memoryview(buf)
        left = size
        while left:
            n = os.readv(fd, [view[: min(left, CHUNK)]])
            if n == 0:
                raise changed()
            sink(view[:n])
            left -= n
        if os.read(fd, 1):
            raise changed()
        if pad:
            sink(pad)
    finally:
        os.close(fd)


def write_layer(root: Path, out: BinaryIO, epoch: int = 0) -> LayerInfo:
    """Write the deterministic tar of layer directory ``root`` to ``out``, streaming.

    Equal trees give identical bytes whatever their creation order or mtimes above
    ``epoch``. Refuses (UnsafePathError) user files named ``.wh.*``, device nodes other
    than whiteouts, and sockets; raises StoreError if a file changes while being read
    or the tree uses overlay redirect/metacopy. Writes only to ``out``; on error ``out``
    holds a partial tar that the caller must discard.
    """
    h = hashlib.sha256()
    update = h.update
    write = out.write

    def sink(chunk: bytes | memoryview) -> None:
        write(chunk)
        update(chunk)

    size = _emit(root, epoch, sink)
    return LayerInfo(DiffID(DIGEST_PREFIX + h.hexdigest()), size)


def layer_info(root: Path, epoch: int = 0) -> LayerInfo:
    """The ``diff_id`` and size :func:`write_layer` would produce, without keeping bytes.
    Same refusals; reads the tree once, streaming."""
    h = hashlib.sha256()
    size = _emit(root, epoch, h.update)
    return LayerInfo(DiffID(DIGEST_PREFIX + h.hexdigest()), size)
