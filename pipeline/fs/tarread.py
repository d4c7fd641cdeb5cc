"""Reading tar streams for the importer: whole-file decompression (gzip, xz, bzip2, by
magic number), a hashing and counting reader, cheap member listing, and random access
to the files of an image archive (OCI archive, ``docker save``) in place.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import posixpath
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.errors import StoreError
from pipeline.fs.tarformat import CHUNK
from pipeline.fs.tarstream import TarEntry, TarReader
from pipeline.limits import Limits, current, over

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
        while self.read(CHUNK):
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


class _Counting(io.RawIOBase):
    """A raw reader over ``stream`` that counts the bytes read from it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        return n


class _RatioCapped:
    """A decompressed stream that refuses to expand beyond ``Limits.ratio`` times the
    compressed bytes read so far (once past ``Limits.ratio_grace_bytes``): a
    decompression bomb is stopped after a bounded amount of output."""

    def __init__(self, inner: BinaryIO, source: _Counting, where: str, limits: Limits) -> None:
        self._inner = inner
        self._source = source
        self._where = where
        self._limits = limits
        self.out = 0

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self.out += len(data)
        limits = self._limits
        if self.out > limits.ratio_grace_bytes and self.out > limits.ratio * max(
            1, self._source.count
        ):
            raise StoreError(
                f"{self._where}: refused: {self._source.count:,} compressed bytes expand to "
                f"more than {self.out:,} (over {limits.ratio} times; a decompression bomb?); "
                + over("ratio", limits.ratio, "times")
            )
        return data

    def close(self) -> None:
        self._inner.close()


def raw_decompressed(
    stream: BinaryIO, where: str, limits: Limits | None = None
) -> tuple[BinaryIO, str]:
    """``stream`` decompressed by its magic bytes (ratio-capped), and the compression."""
    limits = limits or current()
    head = b""
    while len(head) < 6:
        more = stream.read(6 - len(head))
        if not more:
            break
        head += more
    kind = next((name for magic, name in _MAGIC_NUMBERS if head.startswith(magic)), "")
    counting = _Counting(_Prefixed(head, stream))  # type: ignore[arg-type]
    # compressed input is read in small steps, so the ratio is measured closely
    raw = io.BufferedReader(counting, 64 << 10 if kind else CHUNK)
    inner: Any
    if kind == "gzip":
        inner = gzip.GzipFile(fileobj=raw, mode="rb")
    elif kind == "zstd":
        raise StoreError(f"{where}: zstd-compressed; reading zstd needs the 'zstandard' package")
    elif kind == "xz":
        inner = lzma.LZMAFile(raw)  # noqa: SIM115 - the caller closes it
    elif kind == "bzip2":
        inner = bz2.BZ2File(raw)
    else:
        return raw, kind
    return _RatioCapped(inner, counting, where, limits), kind  # type: ignore[return-value]


def decompressed(stream: BinaryIO, where: str) -> tuple[BinaryIO, str]:
    """``stream`` decompressed by its magic bytes, and the compression found ("" for
    none, "gzip", "xz", "bzip2"). Streaming; the result supports ``read()`` only, and
    corrupt data raises StoreError naming ``where``; so does output beyond the
    decompression ratio cap. zstd raises StoreError (the optional 'zstandard' package
    is not a dependency)."""
    inner, kind = raw_decompressed(stream, where)
    return HashingReader(inner, where), kind  # type: ignore[return-value]


def member_names(path: Path) -> tuple[frozenset[str], str]:
    """(the normalised member names, the compression) of the tar file at ``path``,
    which may be compressed like :func:`decompressed` accepts. Keeps only the names:
    an uncompressed file is scanned by seeking from header to header, a compressed
    one is decompressed once, streaming. StoreError if it is not a valid tar (see
    :mod:`.tarstream`: truncated, corrupt, or over a limit)."""
    names: set[str] = set()
    where = str(path)
    with path.open("rb") as f:
        stream, compression = raw_decompressed(f, where)
        if compression:
            reader = TarReader(HashingReader(stream, where), where)  # type: ignore[arg-type]
        else:
            f.seek(0)
            reader = TarReader(f, where)
        for member in reader.entries():
            names.add(_normalised(member.name))
    return frozenset(names), compression


def _normalised(name: str) -> str:
    """An archive member name without ``./`` prefixes, duplicate or trailing slashes."""
    return "/".join(p for p in name.split("/") if p not in ("", "."))


class _Region(io.RawIOBase):
    """``size`` bytes of the open file ``fd`` from ``offset``, read with pread."""

    def __init__(self, fd: int, offset: int, size: int, where: str) -> None:
        self._fd = fd
        self._pos = offset
        self._left = size
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._left)
        if n <= 0:
            return 0
        data = os.pread(self._fd, n, self._pos)
        if not data:
            raise StoreError(f"{self._where}: truncated: the archive file ends early")
        b[: len(data)] = data
        self._pos += len(data)
        self._left -= len(data)
        return len(data)


class TarArchive:
    """Read-only random access to the members of an *uncompressed* tar archive file
    (an OCI archive, a ``docker save`` archive), without extracting it.

    Opening reads every header once (strictly, see :mod:`.tarstream`), seeking past
    contents. :meth:`open` streams one member's bytes straight from the archive file.
    Names are normalised (no ``./``, no trailing slash). Symlinks and hardlinks
    between members are followed inside the archive only; a link leaving it counts
    as missing. Use as a context manager.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("rb")
        self._members: dict[str, TarEntry] = {}
        self._data: dict[int, int] = {}  # entry index -> offset of its data
        try:
            reader = TarReader(self._file, str(path))
            for member in reader.entries():
                self._members[_normalised(member.name)] = member
                self._data[member.index] = reader.offset
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> TarArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._members)

    def _resolve(self, name: str) -> TarEntry | None:
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
        where = f"{self.path}:{member.name}"
        region = _Region(self._file.fileno(), self._data[member.index], member.size, where)
        return io.BufferedReader(region, CHUNK)
