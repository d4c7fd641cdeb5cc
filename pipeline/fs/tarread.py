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
import posixpath
import tarfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.errors import StoreError
from pipeline.fs.tarformat import CHUNK

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


def raw_decompressed(stream: BinaryIO, where: str) -> tuple[BinaryIO, str]:
    head = b""
    while len(head) < 6:
        more = stream.read(6 - len(head))
        if not more:
            break
        head += more
    raw = io.BufferedReader(_Prefixed(head, stream), CHUNK)
    kind = next((name for magic, name in _MAGIC_NUMBERS if head.startswith(magic)), "")
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), kind  # type: ignore[return-value]
    if kind == "zstd":
        raise StoreError(f"{where}: zstd-compressed; reading zstd needs the 'zstandard' package")
    if kind == "xz":
        return lzma.LZMAFile(raw), kind  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.BZ2File(raw), kind  # type: ignore[return-value]
    return raw, kind


def decompressed(stream: BinaryIO, where: str) -> tuple[BinaryIO, str]:
    """``stream`` decompressed by its magic bytes, and the compression found ("" for
    none, "gzip", "xz", "bzip2"). Streaming; the result supports ``read()`` only, and
    corrupt data raises StoreError naming ``where``. zstd raises StoreError (the
    optional 'zstandard' package is not a dependency)."""
    inner, kind = raw_decompressed(stream, where)
    return HashingReader(inner, where), kind  # type: ignore[return-value]


def member_names(path: Path) -> tuple[frozenset[str], str]:
    """(the normalised member names, the compression) of the tar file at ``path``,
    which may be compressed like :func:`decompressed` accepts. Keeps only the names:
    an uncompressed file is scanned by seeking from header to header, a compressed
    one is decompressed once, streaming. StoreError if it is not a tar."""
    names: set[str] = set()
    where = str(path)
    with path.open("rb") as f:
        stream, compression = raw_decompressed(f, where)
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
                    tf.members.clear()  # type: ignore[attr-defined]  # names only: memory stays flat
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
