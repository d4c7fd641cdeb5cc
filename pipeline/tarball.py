"""Layer directories <-> layer tar streams. The only module that reads or writes tar.

A layer is kept unpacked as a directory in overlayfs *upperdir* format, so it can be
used directly as an overlay lowerdir:

* a deleted path is a character device 0:0 carrying the deleted name (a whiteout);
* an opaque directory carries the xattr ``trusted.overlay.opaque`` = ``y``;
* everything else is a regular file, directory, symlink, hardlink (same inode) or
  fifo with numeric owner, mode (setuid etc. included) and xattrs as on disk.
  No real device nodes.

The tar form is a deterministic function of that directory (:func:`write_layer`):
PAX format, entries in byte order of their tar path (parents before children), an
opaque marker first among its directory's children, mtimes clamped to ``epoch``,
no atime/ctime, empty uname/gname, whiteouts as empty ``.wh.NAME`` files. The header
writer is our own (much faster than :mod:`tarfile`) but emits exactly the bytes
``tarfile`` would for the same members in ``PAX_FORMAT`` (a test checks this).

:func:`extract_layer` reads any OCI/docker layer tar (plain, gzip, xz, bzip2) into
that directory format, treating every path in it as hostile.

For the importer, :class:`TarArchive` gives random access to the files of an image
archive (OCI archive, ``docker save``) in place, :func:`member_names` lists a tar's
names cheaply, and :func:`decompressed` undoes whole-file compression.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import io
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.digest import DIGEST_PREFIX
from pipeline.errors import StoreError, UnsafePathError

OPAQUE_XATTR = "trusted.overlay.opaque"
WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"

BLOCK = 512
RECORD = 20 * BLOCK  # tarfile pads the archive to a multiple of this
_CHUNK = 1 << 20
_NUL = b"\0"

# Overlay-internal xattrs are never part of a layer's content; the SELinux label is
# host policy, not image content. Everything else (security.capability, user.*,
# POSIX ACLs) travels as SCHILY.xattr records.
_SKIP_XATTR_PREFIXES = ("trusted.", "user.overlay.")
_SKIP_XATTRS = frozenset({"security.selinux"})
# Overlay features whose upperdir is not a self-contained diff: refuse, don't guess.
_UNSUPPORTED_OVERLAY = ("trusted.overlay.redirect", "trusted.overlay.metacopy")


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """The identity of a layer's tar form: ``diff_id`` (``sha256:<hex>``) and byte size."""

    diff_id: str
    size: int


@dataclass(frozen=True, slots=True)
class ExtractReport:
    """What :func:`extract_layer` did.

    ``diff_id``/``size`` are the digest and length of the *uncompressed* tar stream
    (the whole stream, including trailing padding), for checking against a config's
    ``rootfs.diff_ids``. ``skipped`` lists the device nodes (and other entries that
    cannot live in a layer) that were not created; ``notes`` says why, in words.
    """

    diff_id: str
    size: int
    entries: int
    skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _keep_xattr(name: str) -> bool:
    return not name.startswith(_SKIP_XATTR_PREFIXES) and name not in _SKIP_XATTRS


# ---------------------------------------------------------------------------------------
# Writing: headers


_MAGIC = b"ustar\x0000"
_MAGIC_SUM = sum(_MAGIC)


def _ustar(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes = b"",
) -> bytes:
    """One ustar header block, laid out exactly as ``tarfile`` lays it out in PAX mode
    (empty uname/gname/prefix, NUL device fields). Numbers must already fit their fields.
    The checksum is summed over the non-NUL parts only (the rest adds nothing)."""
    name = name[:100]
    linkname = linkname[:100]
    numbers = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode & 0o7777, uid, gid, size, mtime)
    chk = sum(name) + sum(numbers) + 8 * 32 + typeflag[0] + sum(linkname) + _MAGIC_SUM
    return b"".join(
        (
            name.ljust(100, _NUL),
            numbers,
            b"%06o\0 " % chk,
            typeflag,
            linkname.ljust(100, _NUL),
            _MAGIC,
            b"\0" * 247,  # uname 32, gname 32, devmajor 8, devminor 8, prefix 155, pad 12
        )
    )


def _ascii_field(value: bytes) -> bytes:
    """What ``tarfile`` puts in a 100-byte name field when the real value is in PAX:
    the text with every non-ASCII character replaced by ``?``."""
    if value.isascii():
        return value
    return value.decode("utf-8", "surrogateescape").encode("ascii", "replace")


def _pax_record(keyword: bytes, value: bytes) -> bytes:
    base = len(keyword) + len(value) + 3
    n = p = 0
    while True:
        n = base + len(str(p))
        if n == p:
            break
        p = n
    return b"%d %s=%s\n" % (p, keyword, value)


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _header(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes = b"",
    xattrs: tuple[tuple[str, bytes], ...] = (),
) -> bytes:
    """The header block(s) of one member: a PAX extended header when needed, then ustar."""
    if (
        not xattrs
        and len(name) <= 100
        and len(linkname) <= 100
        and name.isascii()
        and linkname.isascii()
        and 0 <= uid < 0o7777777
        and 0 <= gid < 0o7777777
        and 0 <= size < 0o77777777777
        and 0 <= mtime < 0o77777777777
    ):
        return _ustar(name, mode, uid, gid, size, mtime, typeflag, linkname)
    pax: list[tuple[bytes, bytes]] = [
        (b"SCHILY.xattr." + k.encode("utf-8", "surrogateescape"), v) for k, v in xattrs
    ]
    if len(name) > 100 or not name.isascii():
        pax.append((b"path", name))
        name = _ascii_field(name)
    if len(linkname) > 100 or not linkname.isascii():
        pax.append((b"linkpath", linkname))
        linkname = _ascii_field(linkname)
    numbers = {b"uid": uid, b"gid": gid, b"size": size, b"mtime": mtime}
    limits = {b"uid": 8**7, b"gid": 8**7, b"size": 8**11, b"mtime": 8**11}
    for key, value in numbers.items():
        if not 0 <= value < limits[key]:
            pax.append((key, str(value).encode()))
            numbers[key] = 0
    records = b"".join(_pax_record(k, v) for k, v in pax)
    if not all(_is_utf8(v) for _, v in pax):
        records = b"21 hdrcharset=BINARY\n" + records
    return (
        _ustar(b"././@PaxHeader", 0, 0, 0, len(records), 0, b"x")
        + records
        + _NUL * (-len(records) % BLOCK)
        + _ustar(
            name,
            mode,
            numbers[b"uid"],
            numbers[b"gid"],
            numbers[b"size"],
            numbers[b"mtime"],
            typeflag,
            linkname,
        )
    )


# ---------------------------------------------------------------------------------------
# Writing: the walk

_DIR, _REG, _SYMLINK, _FIFO, _WHITEOUT, _OPAQUE = range(6)


# One entry to write: (sort key, tar path, kind, absolute path, lstat, kept xattrs).
# The sort key is the tar path without its trailing slash, except for an opaque
# marker, whose key "DIR/" puts it first among DIR's children. Plain tuples: this is
# the hot path of every build step.
_Entry = tuple[bytes, bytes, int, bytes, os.stat_result, tuple[tuple[str, bytes], ...]]


def _scan(root: Path) -> list[_Entry]:
    """Every entry below ``root`` (not root itself), validated, unsorted."""
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
        entries.append((b"", OPAQUE_MARKER, _OPAQUE, rootb, rst, ()))
    stack: list[tuple[bytes, bytes]] = [(b"", rootb)]
    while stack:
        rel_dir, abs_dir = stack.pop()
        with os.scandir(abs_dir) as it:
            for e in it:
                rel = rel_dir + e.name
                st = e.stat(follow_symlinks=False)
                mode = st.st_mode
                is_whiteout = stat.S_ISCHR(mode) and st.st_rdev == 0
                if e.name.startswith(WHITEOUT_PREFIX):
                    raise UnsafePathError(
                        where,
                        os.fsdecode(rel),
                        "names starting with '.wh.' are reserved for whiteouts",
                    )
                xattrs, opaque = _read_xattrs(e.path, where, rel)
                if stat.S_ISDIR(mode):
                    entries.append((rel, rel + b"/", _DIR, e.path, st, xattrs))
                    if opaque:
                        marker = rel + b"/" + OPAQUE_MARKER
                        entries.append((rel + b"/", marker, _OPAQUE, e.path, st, ()))
                    stack.append((rel + b"/", e.path))
                elif stat.S_ISREG(mode):
                    entries.append((rel, rel, _REG, e.path, st, xattrs))
                elif stat.S_ISLNK(mode):
                    entries.append((rel, rel, _SYMLINK, e.path, st, xattrs))
                elif stat.S_ISFIFO(mode):
                    entries.append((rel, rel, _FIFO, e.path, st, xattrs))
                elif is_whiteout:
                    name = rel_dir + WHITEOUT_PREFIX + e.name
                    entries.append((name, name, _WHITEOUT, e.path, st, ()))
                else:
                    what = "socket" if stat.S_ISSOCK(mode) else "device node"
                    raise UnsafePathError(
                        where, os.fsdecode(rel), f"a {what} cannot be stored in a layer"
                    )
    return entries


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
        if name in _UNSUPPORTED_OVERLAY:
            raise StoreError(
                f"{where}: {os.fsdecode(rel) or '.'}: has {name}; mount overlayfs with "
                "redirect_dir=off,metacopy=off so the upperdir is a complete diff"
            )
        if name == OPAQUE_XATTR:
            opaque = os.getxattr(path, name, follow_symlinks=False) == b"y"
        elif _keep_xattr(name):
            kept.append((name, os.getxattr(path, name, follow_symlinks=False)))
    return tuple(kept), opaque


def _emit(root: Path, epoch: int, sink: Callable[[bytes | memoryview], object]) -> int:
    """Stream the deterministic tar of ``root`` into ``sink``; return its byte length."""
    where = str(root)
    entries = _scan(root)
    entries.sort(key=lambda e: e[0])
    total = 0
    first_link: dict[tuple[int, int], bytes] = {}
    buf = bytearray(_CHUNK)
    for _, name, kind, path, st, xattrs in entries:
        mtime = min(st.st_mtime_ns // 1_000_000_000, epoch)
        mode, uid, gid = st.st_mode, st.st_uid, st.st_gid
        if kind == _REG:
            if st.st_nlink > 1:
                ident = (st.st_dev, st.st_ino)
                target = first_link.get(ident)
                if target is not None:
                    chunk = _header(name, mode, uid, gid, 0, mtime, b"1", target, xattrs)
                    sink(chunk)
                    total += len(chunk)
                    continue
                first_link[ident] = name
            size = st.st_size
            head = _header(name, mode, uid, gid, size, mtime, b"0", b"", xattrs)
            total += len(head) + size + (-size % BLOCK)
            _emit_file(path, size, head, buf, sink, where, name)
            continue
        if kind == _DIR:
            chunk = _header(name, mode, uid, gid, 0, mtime, b"5", b"", xattrs)
        elif kind == _SYMLINK:
            chunk = _header(name, mode, uid, gid, 0, mtime, b"2", os.readlink(path), xattrs)
        elif kind == _FIFO:
            chunk = _header(name, mode, uid, gid, 0, mtime, b"6", b"", xattrs)
        else:  # _WHITEOUT, _OPAQUE: canonical empty marker files
            chunk = _header(name, 0o600, 0, 0, 0, mtime, b"0")
        sink(chunk)
        total += len(chunk)
    end = b"\0" * (2 * BLOCK)
    end += b"\0" * (-(total + len(end)) % RECORD)
    sink(end)
    return total + len(end)


def _emit_file(
    path: bytes,
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

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        pad = b"\0" * (-size % BLOCK)
        if size < _CHUNK:  # one read, one sink call
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
            n = os.readv(fd, [view[: min(left, _CHUNK)]])
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
    return LayerInfo(DIGEST_PREFIX + h.hexdigest(), size)


def layer_info(root: Path, epoch: int = 0) -> LayerInfo:
    """The ``diff_id`` and size :func:`write_layer` would produce, without keeping bytes.
    Same refusals; reads the tree once, streaming."""
    h = hashlib.sha256()
    size = _emit(root, epoch, h.update)
    return LayerInfo(DIGEST_PREFIX + h.hexdigest(), size)


# ---------------------------------------------------------------------------------------
# Reading: decompression and hashing


class _Prefixed(io.RawIOBase):
    """A raw reader that yields ``head`` and then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(b))
        n = len(data)
        b[:n] = data
        return n


class HashingReader:
    """A read-only stream wrapper that hashes and counts every byte read through it.
    Decompression errors surface as StoreError naming ``where``."""

    def __init__(self, inner: BinaryIO, where: str) -> None:
        self._inner = inner
        self._where = where
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._inner.read(n)
        except (EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
            raise StoreError(f"{self._where}: corrupt or truncated data: {exc}") from None
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


_MAGIC_NUMBERS = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
)


def _decompressed(stream: BinaryIO, where: str) -> tuple[BinaryIO, str]:
    head = b""
    while len(head) < 6:
        more = stream.read(6 - len(head))
        if not more:
            break
        head += more
    raw = io.BufferedReader(_Prefixed(head, stream), _CHUNK)
    kind = next((name for magic, name in _MAGIC_NUMBERS if head.startswith(magic)), "")
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), kind  # type: ignore[return-value]
    if kind == "zstd":
        raise StoreError(f"{where}: zstd-compressed; reading zstd needs the 'zstandard' package")
    if kind == "xz":
        return lzma.LZMAFile(raw), kind  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.BZ2File(raw), kind  # type: ignore[return-value]
    return raw, kind  # type: ignore[return-value]


def decompressed(stream: BinaryIO, where: str) -> tuple[BinaryIO, str]:
    """``stream`` decompressed by its magic bytes, and the compression found ("" for
    none, "gzip", "xz", "bzip2"). Streaming; the result supports ``read()`` only, and
    corrupt data raises StoreError naming ``where``. zstd raises StoreError (the
    optional 'zstandard' package is not a dependency)."""
    inner, kind = _decompressed(stream, where)
    return HashingReader(inner, where), kind  # type: ignore[return-value]


def member_names(path: Path) -> tuple[frozenset[str], str]:
    """(the normalised member names, the compression) of the tar file at ``path``,
    which may be compressed like :func:`decompressed` accepts. Keeps only the names:
    an uncompressed file is scanned by seeking from header to header, a compressed
    one is decompressed once, streaming. StoreError if it is not a tar."""
    names: set[str] = set()
    where = str(path)
    with path.open("rb") as f:
        stream, compression = _decompressed(f, where)
        if compression:
            source: dict[str, Any] = {"fileobj": HashingReader(stream, where), "mode": "r|"}
        else:
            f.seek(0)
            source = {"fileobj": f, "mode": "r:"}
        try:
            with tarfile.open(
                **source, bufsize=tarfile.RECORDSIZE, encoding="utf-8", errors="surrogateescape"
            ) as tf:
                while True:
                    member = tf.next()
                    if member is None:
                        return frozenset(names), compression
                    tf.members.clear()  # names only: memory stays flat
                    names.add(_normalised(member.name))
        except tarfile.TarError as exc:
            raise StoreError(f"{where}: not a valid tar archive: {exc}") from None


def _normalised(name: str) -> str:
    """An archive member name without ``./`` prefixes, duplicate or trailing slashes."""
    return "/".join(p for p in name.split("/") if p not in ("", "."))


class TarArchive:
    """Read-only random access to the members of an *uncompressed* tar archive file
    (an OCI archive, a ``docker save`` archive), without extracting it.

    Opening reads every header once, seeking past contents. :meth:`open` streams one
    member's bytes straight from the archive file. Names are normalised (no ``./``,
    no trailing slash). Symlinks and hardlinks between members are followed inside
    the archive only; a link leaving it counts as missing. Use as a context manager.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # closed by close() / the context manager
            self._tf = tarfile.open(  # noqa: SIM115
                path, "r:", encoding="utf-8", errors="surrogateescape"
            )
        except tarfile.TarError as exc:
            raise StoreError(f"{path}: not a valid tar archive: {exc}") from None
        self._members: dict[str, tarfile.TarInfo] = {}
        for member in self._tf.getmembers():
            self._members[_normalised(member.name)] = member

    def __enter__(self) -> TarArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._tf.close()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._members)

    def _resolve(self, name: str) -> tarfile.TarInfo | None:
        name = _normalised(name)
        for _ in range(16):
            member = self._members.get(name)
            if member is None or not (member.issym() or member.islnk()):
                return member
            base = posixpath.dirname(name) if member.issym() else ""
            target = posixpath.normpath(posixpath.join(base, member.linkname.lstrip("/")))
            if target.startswith("../") or target in ("..", "."):
                return None
            name = _normalised(target)
        return None

    def is_file(self, name: str) -> bool:
        member = self._resolve(name)
        return member is not None and member.isreg()

    def open(self, name: str) -> BinaryIO:
        """A reader of member ``name``'s contents; StoreError if it is not a file here."""
        member = self._resolve(name)
        if member is None or not member.isreg():
            raise StoreError(f"{self.path}: {name}: no such file in the archive")
        reader = self._tf.extractfile(member)
        assert reader is not None
        return reader  # type: ignore[return-value]


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

    def __init__(self, root_fd: int, where: str) -> None:
        self.root_fd = root_fd
        self.where = where
        self.fds: OrderedDict[tuple[bytes, ...], int] = OrderedDict()
        self.dir_times: dict[tuple[bytes, ...], int] = {}
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self.chown_ok = True

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # -- directories ---------------------------------------------------------------

    def dir_fd(self, parts: tuple[bytes, ...], create: bool) -> int:
        """An fd of directory ``parts`` (borrowed: valid until the next call).
        Missing components are created (0755, root) when ``create``; a whiteout in the
        way is replaced by an opaque directory; a symlink or non-directory is refused."""
        if not parts:
            return self.root_fd
        fd = self.fds.get(parts)
        if fd is not None:
            self.fds.move_to_end(parts)
            return fd
        parent = self.dir_fd(parts[:-1], create)
        name = parts[-1]
        if name in (b"..", b"."):  # _split already refuses these; never walk upwards
            raise _Refused("'..' component")
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise _Refused(f"'{os.fsdecode(b'/'.join(parts))}' does not exist") from None
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = _lstat_at(parent, name)
            shown = os.fsdecode(b"/".join(parts))
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise _Refused(f"parent '{shown}' is a symlink") from None
            if not (create and st is not None and _is_whiteout(st)):
                raise _Refused(f"parent '{shown}' is not a directory") from None
            os.unlink(name, dir_fd=parent)
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            os.setxattr(fd, OPAQUE_XATTR, b"y")
        self._cache(parts, fd)
        return fd

    def _cache(self, parts: tuple[bytes, ...], fd: int) -> None:
        old = self.fds.pop(parts, None)
        if old is not None and old != fd:
            os.close(old)
        self.fds[parts] = fd
        while len(self.fds) > _FD_CACHE:
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
            shutil.rmtree(name, dir_fd=parent)  # type: ignore[call-arg]
            n = len(parts)
            for stale in [p for p in self.fds if p[:n] == parts]:
                os.close(self.fds.pop(stale))
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


def _member_xattrs(member: tarfile.TarInfo) -> tuple[list[tuple[str, bytes]], list[str]]:
    kept: list[tuple[str, bytes]] = []
    dropped: list[str] = []
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr.") :]
        if _keep_xattr(name):
            kept.append((name, value.encode("utf-8", "surrogateescape")))
        else:
            dropped.append(name)
    return kept, dropped


def _mtime_ns(member: tarfile.TarInfo) -> int:
    mt = member.mtime
    if isinstance(mt, int):
        return mt * 1_000_000_000
    return round(mt * 1_000_000_000)


def extract_layer(stream: BinaryIO, dest: Path, where: str) -> ExtractReport:
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
    whiteout, or is reached through a symlink. Nothing is ever created outside
    ``dest``. Not atomic: on error ``dest`` holds a partial layer for the caller to
    remove. Corrupt or truncated streams raise StoreError.
    """
    dest.mkdir(parents=True, exist_ok=True)
    root_fd = os.open(dest, _DIR_FLAGS)
    ex = _Extractor(root_fd, where)
    try:
        hashing = HashingReader(_decompressed(stream, where)[0], where)
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
    try:
        with tarfile.open(  # type: ignore[call-overload]
            fileobj=hashing,
            mode="r|",
            bufsize=tarfile.RECORDSIZE,
            encoding="utf-8",
            errors="surrogateescape",
        ) as tf:
            while True:
                member = tf.next()
                if member is None:
                    return count
                tf.members.clear()  # stream mode: do not keep every header
                count += 1
                try:
                    _extract_member(ex, tf, member)
                except _Refused as exc:
                    raise UnsafePathError(where, member.name, exc.reason) from None
    except tarfile.TarError as exc:
        raise StoreError(f"{where}: not a valid tar stream: {exc}") from None


def _apply_dir_times(ex: _Extractor) -> None:
    """Directory mtimes last: creating children changes them."""
    for parts, ns in ex.dir_times.items():
        try:
            fd = ex.dir_fd(parts, create=False)
        except _Refused:
            continue  # replaced later in the stream
        os.utime(fd, ns=(ns, ns))


def _extract_member(ex: _Extractor, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
    parts = _split(m.name)
    shown = os.fsdecode(b"/".join(parts)) or "."
    if not parts:
        return  # the layer root itself: its metadata is not part of a layer
    base = parts[-1]
    dirparts = parts[:-1]
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
        fd = os.open(
            base,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=parent,
        )
        try:
            src = tf.extractfile(m)
            assert src is not None
            while True:
                chunk = src.read(_CHUNK)
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
    ex: _Extractor, m: tarfile.TarInfo, dirparts: tuple[bytes, ...], base: bytes, shown: str
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


def _hardlink(ex: _Extractor, m: tarfile.TarInfo, parts: tuple[bytes, ...], shown: str) -> None:
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
    finally:
        os.close(tfd)
