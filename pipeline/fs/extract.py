"""Safe extraction of any OCI/docker layer tar into the layer directory format.

Every path in the archive is hostile: each entry is created relative to directory fds
opened with ``O_NOFOLLOW`` from the layer root down, never through a symlink, never
above the root; whiteouts and opaque markers become overlay whiteouts and the opaque
xattr; hardlinks must point at an entry already extracted. A refused entry is a
:class:`~pipeline.errors.UnsafePathError` naming it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pipeline.digest import DIGEST_PREFIX
from pipeline.errors import StoreError, UnsafePathError
from pipeline.fs.tarformat import (
    CHUNK,
    OPAQUE_MARKER,
    OPAQUE_XATTR,
    WHITEOUT_PREFIX,
    ExtractReport,
    keep_xattr,
)
from pipeline.fs.tarread import HashingReader, raw_decompressed
from pipeline.fs.tarstream import TarEntry, TarReader
from pipeline.fs.tree import fd_budget, remove_tree_at
from pipeline.limits import Limits, current, human, over, shown_name

# ---------------------------------------------------------------------------------------
# Reading: safe extraction

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FD_CACHE = 64


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _lstat_at(dir_fd: int, name: bytes) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _split(name: str) -> tuple[bytes, ...]:
    """A member path as components; refuses absolute paths, ``..`` and NUL bytes."""
    raw = os.fsencode(name)
    if b"\0" in raw:
        raise _Refused("NUL byte in path")
    if raw.startswith(b"/"):
        raise _Refused("absolute path")
    parts = tuple(p for p in raw.split(b"/") if p not in (b"", b"."))
    if b".." in parts:
        raise _Refused("'..' component")
    return parts


class _Extractor:
    """Creates entries below one open root directory fd, never following a symlink.

    Every path is walked component by component with O_NOFOLLOW|O_DIRECTORY opens
    relative to the previous component's fd, so nothing can be created outside the
    root whatever the tar contains. Parent fds are cached (bounded); the cache is
    dropped whenever a directory is removed.
    """

    def __init__(self, root_fd: int, where: str, limits: Limits) -> None:
        self.root_fd = root_fd
        self.where = where
        self.limits = limits
        self.fds: OrderedDict[tuple[bytes, ...], int] = OrderedDict()
        self.fd_cache = fd_budget(_FD_CACHE)
        self.dir_times: dict[tuple[bytes, ...], int] = {}
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self.chown_ok = True
        self.add = False  # Dockerfile ADD semantics (see extract_layer)
        self.implicit_owner = (0, 0)  # owner of the directory made for a member's parent
        self.implicit_parent: tuple[bytes, ...] = ()
        self.unpacked = 0  # file bytes written
        self.unchecked = 0  # bytes written since free space was last checked

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def claim(self, size: int, shown: str) -> None:
        """Account for ``size`` bytes about to be written: refuse (StoreError naming
        the entry) past ``Limits.unpacked_bytes``, or when the disk would keep less
        than ``Limits.free_reserve_bytes`` free (checked for every file of 1 MiB or
        more, and after every 16 MiB of smaller ones)."""
        limits = self.limits
        self.unpacked += size
        if self.unpacked > limits.unpacked_bytes:
            raise StoreError(
                f"{self.where}: {shown}: the archive unpacks to more than "
                f"{human(limits.unpacked_bytes)}; " + over("unpacked_bytes", limits.unpacked_bytes)
            )
        self.unchecked += size
        if size < (1 << 20) and self.unchecked < (16 << 20):
            return
        self.unchecked = 0
        st = os.fstatvfs(self.root_fd)
        free = st.f_bavail * st.f_frsize
        if size > free - limits.free_reserve_bytes:
            raise StoreError(
                f"{self.where}: {shown}: needs {size:,} bytes but the store's disk has "
                f"{free:,} free (keeping {human(limits.free_reserve_bytes)} in reserve; "
                f"{Limits.variable('free_reserve_bytes')} sets it)"
            )

    # -- directories ---------------------------------------------------------------

    def dir_fd(self, parts: tuple[bytes, ...], create: bool) -> int:
        """An fd of directory ``parts`` (borrowed: valid until the next call).
        Missing components are created (0755, root) when ``create``; a whiteout in the
        way is replaced by an opaque directory; a symlink or non-directory is refused.
        Iterative: walks down from the deepest cached ancestor."""
        if not parts:
            return self.root_fd
        fd = self.fds.get(parts)
        if fd is not None:
            self.fds.move_to_end(parts)
            return fd
        depth = len(parts) - 1
        while depth > 0 and parts[:depth] not in self.fds:
            depth -= 1
        parent = self.fds[parts[:depth]] if depth else self.root_fd
        owned = -1  # an fd opened on the way down and not cached
        try:
            for i in range(depth, len(parts)):
                fd = self._open_child(parent, parts[: i + 1], create)
                if owned >= 0:
                    os.close(owned)
                owned = fd
                parent = fd
            self._cache(parts, owned)
            owned = -1
            return parent
        finally:
            if owned >= 0:
                os.close(owned)

    def _open_child(self, parent: int, parts: tuple[bytes, ...], create: bool) -> int:
        name = parts[-1]
        if name in (b"..", b"."):  # _split already refuses these; never walk upwards
            raise _Refused("'..' component")
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise _Refused(f"'{os.fsdecode(b'/'.join(parts))}' does not exist") from None
            os.mkdir(name, 0o755, dir_fd=parent)
            if parts == self.implicit_parent and self.implicit_owner != (0, 0):
                uid, gid = self.implicit_owner
                self.owner(lambda: os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False))
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = _lstat_at(parent, name)
            shown = shown_name(os.fsdecode(b"/".join(parts)))
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise _Refused(f"parent '{shown}' is a symlink") from None
            if not (create and st is not None and _is_whiteout(st)):
                raise _Refused(f"parent '{shown}' is not a directory") from None
            os.unlink(name, dir_fd=parent)
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            os.setxattr(fd, OPAQUE_XATTR, b"y")
            return fd

    def _cache(self, parts: tuple[bytes, ...], fd: int) -> None:
        old = self.fds.pop(parts, None)
        if old is not None and old != fd:
            os.close(old)
        self.fds[parts] = fd
        while len(self.fds) > self.fd_cache:
            _, evicted = self.fds.popitem(last=False)
            os.close(evicted)

    def clear_slot(
        self, parts: tuple[bytes, ...], parent: int, keep_dir: bool
    ) -> os.stat_result | None:
        """Make room for a new entry at ``parts`` (``parent`` is its directory's fd):
        remove what is there unless it is a directory and ``keep_dir``. Returns the
        stat of what was there (None if nothing)."""
        name = parts[-1]
        st = _lstat_at(parent, name)
        if st is None:
            return None
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return st
            n = len(parts)
            for stale in [p for p in self.fds if p[:n] == parts]:
                os.close(self.fds.pop(stale))
            remove_tree_at(parent, name)
        else:
            os.unlink(name, dir_fd=parent)
        return st

    # -- metadata --------------------------------------------------------------------

    def owner(self, fn: Callable[[], None]) -> None:
        if not self.chown_ok:
            return
        try:
            fn()
        except PermissionError:
            self.chown_ok = False
            self.note("owners not kept: not permitted to chown (not root?)")

    def set_xattrs(self, target: int | str, xattrs: list[tuple[str, bytes]], shown: str) -> None:
        for name, value in xattrs:
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, value)
                else:
                    os.setxattr(target, name, value, follow_symlinks=False)
            except OSError as exc:
                self.note(f"{shown}: xattr {name} not kept: {exc.strerror}")


def _member_xattrs(member: TarEntry) -> tuple[list[tuple[str, bytes]], list[str]]:
    kept: list[tuple[str, bytes]] = []
    dropped: list[str] = []
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr.") :]
        if keep_xattr(name):
            kept.append((name, value.encode("utf-8", "surrogateescape")))
        else:
            dropped.append(name)
    return kept, dropped


def _mtime_ns(member: TarEntry) -> int:
    mt = member.mtime
    if isinstance(mt, int):
        return mt * 1_000_000_000
    return round(mt * 1_000_000_000)


def extract_layer(
    stream: BinaryIO, dest: Path, where: str, limits: Limits | None = None, *, add: bool = False
) -> ExtractReport:
    """Extract one layer tar from ``stream`` into directory ``dest`` in overlay format.

    Streaming: reads ``stream`` once, to its end, never holding a member in memory.
    The compression (none, gzip, xz, bzip2) is detected from magic bytes; zstd is
    refused with a StoreError naming the missing package. ``dest`` is created if
    missing and should be empty.

    ``.wh.NAME`` becomes a whiteout (char device 0:0 named NAME) and ``.wh..wh..opq``
    marks its directory opaque; a whiteout and an entry of the same name in one layer
    keep the entry (a directory becomes opaque, as the whiteout hid the lower one).
    Owners (numeric), modes, mtimes and xattrs are kept where permitted (notes say
    what was not); overlay-internal ``trusted.*`` and ``security.selinux`` xattrs are
    dropped. Device nodes, and ``.wh..wh.*`` aufs metadata, are skipped and listed.

    Refused with UnsafePathError (``where`` and the entry named): absolute paths,
    ``..`` components, NUL bytes, any path whose parent is a symlink or non-directory,
    hardlinks whose target is outside the layer, not yet extracted, a directory or a
    whiteout, or is reached through a symlink, and any entry that would replace the
    layer root (a non-directory named ``.``). Nothing is ever created outside
    ``dest``. Not atomic: on error ``dest`` holds a partial layer for the caller to
    remove. Corrupt or truncated streams, and streams over a limit (``limits``,
    default :func:`pipeline.limits.current`: entries, path length and depth, header
    size, unpacked bytes, free disk space, decompression ratio) raise StoreError
    naming the entry; so does a write the filesystem refuses (a full disk).

    ``add`` (Dockerfile ADD of a local archive, as BuildKit unpacks it): a hard link's
    own header mode and owner are applied to the inode it shares, and a directory made
    for an entry's missing parent takes that entry's owner (higher ones stay root's).
    """
    limits = limits or current()
    dest.mkdir(parents=True, exist_ok=True)
    root_fd = os.open(dest, _DIR_FLAGS)
    ex = _Extractor(root_fd, where, limits)
    ex.add = add
    try:
        hashing = HashingReader(raw_decompressed(stream, where, limits)[0], where)
        count = _extract_members(ex, hashing, where)
        hashing.drain()
        _apply_dir_times(ex)
    finally:
        ex.close()
        os.close(root_fd)
    return ExtractReport(
        diff_id=DIGEST_PREFIX + hashing.hash.hexdigest(),
        size=hashing.size,
        entries=count,
        skipped=tuple(ex.skipped),
        notes=tuple(ex.notes),
    )


def _extract_members(ex: _Extractor, hashing: HashingReader, where: str) -> int:
    """Run every member of the tar read from ``hashing`` through ``ex``; the count."""
    count = 0
    reader = TarReader(hashing, where, ex.limits)  # type: ignore[arg-type]
    for member in reader.entries():
        count += 1
        try:
            _extract_member(ex, reader, member)
        except _Refused as exc:
            raise UnsafePathError(where, shown_name(member.name), exc.reason) from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StoreError(f"{where}: {member.shown}: cannot extract: {reason}") from None
    return count


def _apply_dir_times(ex: _Extractor) -> None:
    """Directory mtimes last: creating children changes them."""
    for parts, ns in ex.dir_times.items():
        try:
            fd = ex.dir_fd(parts, create=False)
        except _Refused:
            continue  # replaced later in the stream
        os.utime(fd, ns=(ns, ns))


def _extract_member(ex: _Extractor, reader: TarReader, m: TarEntry) -> None:
    parts = _split(m.name)
    if ex.add:
        ex.implicit_owner, ex.implicit_parent = (m.uid, m.gid), parts[:-1]
    shown = shown_name(os.fsdecode(b"/".join(parts)) or ".")
    if not parts:
        if m.isdir():
            return  # the layer root itself: its metadata is not part of a layer
        raise _Refused(
            f"an entry of type {m.type.decode('latin-1')!r} would replace the layer root"
        )
    base = parts[-1]
    dirparts = parts[:-1]
    if any(p.startswith(WHITEOUT_PREFIX) for p in dirparts):
        raise _Refused("a '.wh.' name marks a whiteout, which cannot hold other entries")
    if base.startswith(WHITEOUT_PREFIX):
        _whiteout(ex, m, dirparts, base, shown)
        return
    if m.ischr() or m.isblk():
        ex.skipped.append(shown)
        ex.note(f"skipped device node(s), e.g. {ex.skipped[0]}: layers hold no devices")
        return
    if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo()):
        ex.skipped.append(shown)
        ex.note(f"{shown}: skipped entry of unsupported type {m.type!r}")
        return
    xattrs, dropped = _member_xattrs(m)
    for name in dropped:
        ex.note(f"{shown}: dropped xattr {name}")
    mode = m.mode & 0o7777
    ns = _mtime_ns(m)
    if m.isdir():
        parent = ex.dir_fd(dirparts, create=True)
        prev = ex.clear_slot(parts, parent, keep_dir=True)
        if prev is None or not stat.S_ISDIR(prev.st_mode):
            os.mkdir(base, 0o700, dir_fd=parent)
        fd = ex.dir_fd(parts, create=False)
        if prev is not None and _is_whiteout(prev):
            os.setxattr(fd, OPAQUE_XATTR, b"y")
        ex.owner(lambda: os.fchown(fd, m.uid, m.gid))
        os.fchmod(fd, mode)
        ex.set_xattrs(fd, xattrs, shown)
        ex.dir_times[parts] = ns
        return
    if m.islnk():
        _hardlink(ex, m, parts, shown)
        return
    parent = ex.dir_fd(dirparts, create=True)
    ex.clear_slot(parts, parent, keep_dir=False)
    if m.isreg():
        ex.claim(m.size, m.shown)
        fd = os.open(
            base,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=parent,
        )
        try:
            while True:
                chunk = reader.read(CHUNK)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            ex.owner(lambda: os.fchown(fd, m.uid, m.gid))
            os.fchmod(fd, mode)
            ex.set_xattrs(fd, xattrs, shown)
            os.utime(fd, ns=(ns, ns))
        finally:
            os.close(fd)
        return
    if m.issym():
        target = os.fsencode(m.linkname)
        if not target or b"\0" in target:
            raise _Refused("symlink with an empty or NUL-containing target")
        os.symlink(target, base, dir_fd=parent)
    else:
        os.mkfifo(base, 0o600, dir_fd=parent)
    ex.owner(lambda: os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False))
    if m.isfifo():  # after chown, which may clear setuid/setgid bits
        os.chmod(base, mode, dir_fd=parent)
    if xattrs:
        ex.set_xattrs(f"/proc/self/fd/{parent}/{os.fsdecode(base)}", xattrs, shown)
    os.utime(base, ns=(ns, ns), dir_fd=parent, follow_symlinks=False)


def _whiteout(
    ex: _Extractor, m: TarEntry, dirparts: tuple[bytes, ...], base: bytes, shown: str
) -> None:
    if base == OPAQUE_MARKER:
        fd = ex.dir_fd(dirparts, create=True)
        os.setxattr(fd, OPAQUE_XATTR, b"y")
        return
    if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        ex.skipped.append(shown)
        ex.note(f"{shown}: skipped aufs metadata entry")
        return
    name = base[len(WHITEOUT_PREFIX) :]
    if name in (b"", b".", b".."):
        raise _Refused("whiteout without a valid name")
    if not (m.isreg() or m.islnk()):
        raise _Refused("whiteout entry is not a regular file")
    parent = ex.dir_fd(dirparts, create=True)
    st = _lstat_at(parent, name)
    if st is None:
        os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
        ns = _mtime_ns(m)
        os.utime(name, ns=(ns, ns), dir_fd=parent, follow_symlinks=False)
    elif stat.S_ISDIR(st.st_mode):
        # same-layer directory wins, but what it replaced below is gone: opaque
        os.setxattr(ex.dir_fd((*dirparts, name), create=False), OPAQUE_XATTR, b"y")
    # an existing non-directory already hides the lower entry


def _hardlink(ex: _Extractor, m: TarEntry, parts: tuple[bytes, ...], shown: str) -> None:
    try:
        tparts = _split(m.linkname)
    except _Refused as exc:
        raise _Refused(f"hardlink target {m.linkname!r}: {exc.reason}") from None
    if not tparts:
        raise _Refused("hardlink to the layer root")
    if tparts == parts:
        raise _Refused("hardlink to itself")
    try:
        tfd = os.dup(ex.dir_fd(tparts[:-1], create=False))
    except _Refused as exc:
        raise _Refused(f"hardlink target {m.linkname!r}: {exc.reason}") from None
    try:
        tst = _lstat_at(tfd, tparts[-1])
        if tst is None:
            raise _Refused(f"hardlink target {m.linkname!r} is not (yet) in this layer")
        if stat.S_ISDIR(tst.st_mode) or _is_whiteout(tst):
            raise _Refused(f"hardlink target {m.linkname!r} is a directory or whiteout")
        parent = ex.dir_fd(parts[:-1], create=True)
        ex.clear_slot(parts, parent, keep_dir=False)
        try:
            os.link(tparts[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:  # the target went with the entry it replaced
            raise _Refused(f"hardlink target {m.linkname!r} is gone") from None
        if ex.add and not stat.S_ISLNK(tst.st_mode):
            name = parts[-1]
            ex.owner(lambda: os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False))
            os.chmod(name, m.mode & 0o7777, dir_fd=parent)
    finally:
        os.close(tfd)
