"""A strict, bounded, streaming tar reader (ustar, GNU and PAX headers).

:class:`TarReader` reads member headers one at a time from any ``read()``-able stream
and never holds more than one header (bounded by ``Limits.header_bytes``) or one
chunk of member data in memory. It is strict where :mod:`tarfile`'s stream mode is
lenient, so a damaged archive is never taken for a short one:

* the archive must end with the end-of-archive marker (a zero block, then a second
  zero block or the end of the stream); a stream that ends anywhere else is
  "truncated", naming the last entry;
* every header must have a valid checksum and well-formed numeric fields (octal or
  GNU base-256; negative sizes and ids refused); PAX records must be well formed;
  a zero block followed by more headers is "corrupt";
* limits (``pipeline.limits``): entries per archive, bytes per PAX header or GNU long
  name, bytes and components per path; GNU sparse members are refused (a layer
  cannot hold holes, and their declared size is unbounded).

Every refusal is a :class:`~pipeline.errors.StoreError` whose message starts with the
archive (``where``) and the entry (its number and name, or the offset of its header).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from pipeline.errors import StoreError
from pipeline.fs.tarformat import BLOCK, CHUNK
from pipeline.limits import Limits, current, over, shown_name

_ZERO = bytes(BLOCK)
_HEADER_ONLY = frozenset(b"123456")  # hardlink, symlink, chr, blk, dir, fifo: no data
_POSIX_MAGIC = b"ustar\x00"
_NUMBER_FIELDS = (
    ("mode", 100, 108),
    ("uid", 108, 116),
    ("gid", 116, 124),
    ("size", 124, 136),
    ("mtime", 136, 148),
    ("devmajor", 329, 337),
    ("devminor", 337, 345),
)


@dataclass(frozen=True, slots=True)
class TarEntry:
    """One archive member, with the same predicates as :class:`tarfile.TarInfo`.

    ``type`` is the typeflag byte (``b"0"`` for regular files, NUL and ``7`` included);
    ``size`` is the number of data bytes that follow (0 for header-only types);
    ``pax_headers`` holds the PAX records (global ones included) as text, values
    decoded UTF-8 with ``surrogateescape``.
    """

    index: int  # 1-based position among real members
    offset: int  # of the first header block of this member (extended headers included)
    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int | float
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    pax_headers: Mapping[str, str] = field(default_factory=dict)

    def isreg(self) -> bool:
        return self.type == b"0"

    def isdir(self) -> bool:
        return self.type == b"5"

    def issym(self) -> bool:
        return self.type == b"2"

    def islnk(self) -> bool:
        return self.type == b"1"

    def ischr(self) -> bool:
        return self.type == b"3"

    def isblk(self) -> bool:
        return self.type == b"4"

    def isfifo(self) -> bool:
        return self.type == b"6"

    @property
    def shown(self) -> str:
        return f'entry {self.index} "{shown_name(self.name)}"'


@dataclass(frozen=True, slots=True)
class _Header:
    """The fields of one 512-byte header block."""

    type: bytes
    name: bytes
    linkname: bytes
    numbers: Mapping[str, int]  # mode, uid, gid, size, mtime, devmajor, devminor


def _nts(field_: bytes) -> bytes:
    end = field_.find(b"\0")
    return field_ if end < 0 else field_[:end]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class TarReader:
    """Members of the tar stream ``stream`` (see the module docstring).

    Iterate :meth:`entries`; while an entry is current, :meth:`read` returns its data
    (``b""`` at its end). Unread data is skipped when the next entry is asked for
    (by seeking when ``stream`` is a seekable file). After the iteration ends, the
    stream is positioned just after the end-of-archive marker.
    """

    def __init__(self, stream: BinaryIO, where: str, limits: Limits | None = None) -> None:
        self.stream = stream
        self.where = where
        self.limits = limits or current()
        self.offset = 0  # bytes consumed from the stream
        self._left = 0  # data bytes of the current entry not yet read
        self._pad = 0
        self._entry: TarEntry | None = None
        self._last = ""
        self._size = _file_size(stream)

    # -- low-level reads --------------------------------------------------------------

    def _read_exact(self, n: int) -> bytes:
        data = self.stream.read(n)
        while len(data) < n:
            more = self.stream.read(n - len(data))
            if not more:
                break
            data += more
        self.offset += len(data)
        return data

    def _skip(self, n: int) -> int:
        """Skip ``n`` bytes; the number skipped (less only at the end of the stream)."""
        if n <= 0:
            return 0
        if self._size is not None:
            step = min(n, max(0, self._size - self.offset))
            self.stream.seek(step, io.SEEK_CUR)
            self.offset += step
            return step
        done = 0
        while done < n:
            got = len(self._read_exact(min(CHUNK, n - done)))
            if not got:
                break
            done += got
        return done

    def _after(self) -> str:
        return f', after "{shown_name(self._last)}"' if self._last else ""

    def _corrupt(self, index: int, offset: int, reason: str) -> StoreError:
        if offset == 0:
            return StoreError(
                f"{self.where}: not a valid tar archive: corrupt first header: {reason}"
            )
        return StoreError(
            f"{self.where}: entry {index} (header at offset {offset}{self._after()}): "
            f"corrupt: {reason}"
        )

    def _truncated(self, what: str) -> StoreError:
        return StoreError(f"{self.where}: truncated: {what}")

    # -- data of the current entry ----------------------------------------------------

    def read(self, n: int = CHUNK) -> bytes:
        """Up to ``n`` bytes of the current entry's data; ``b""`` at its end. StoreError
        ("truncated", naming the entry) if the stream ends first."""
        if self._left <= 0:
            return b""
        want = min(n, self._left)
        data = self.stream.read(want)
        if not data:
            assert self._entry is not None
            got = self._entry.size - self._left
            raise self._truncated(
                f"{self._entry.shown} ends after {got} of its {self._entry.size} bytes"
            )
        self._left -= len(data)
        self.offset += len(data)
        return data

    def _finish_entry(self) -> None:
        if self._entry is None:
            return
        entry, want = self._entry, self._left + self._pad
        self._entry = None
        skipped = self._skip(want)
        if skipped < want:
            if skipped < self._left:
                got = entry.size - self._left + skipped
                raise self._truncated(f"{entry.shown} ends after {got} of its {entry.size} bytes")
            raise self._truncated(f"{entry.shown}: the stream ends inside its padding")
        self._left = self._pad = 0

    # -- headers ---------------------------------------------------------------------

    def entries(self) -> Iterator[TarEntry]:
        """Every member, in archive order (see the class docstring)."""
        limits = self.limits
        globals_: dict[str, str] = {}
        index = 0
        while True:
            self._finish_entry()
            index += 1
            start = self.offset
            pax: dict[str, str] = {}
            long_name: bytes | None = None
            long_link: bytes | None = None
            while True:  # extended headers, then the member's own header
                offset = self.offset
                block = self._read_exact(BLOCK)
                if len(block) < BLOCK:
                    if offset == 0 and not block:
                        raise StoreError(
                            f"{self.where}: not a valid tar archive: the stream is empty"
                        )
                    if not block:
                        raise self._truncated(
                            f"the archive ends after entry {index - 1}{self._after()} "
                            "without its end-of-archive marker"
                        )
                    raise self._truncated(
                        f"the archive ends inside the header of entry {index}{self._after()}"
                    )
                if block == _ZERO:
                    if pax or long_name is not None or long_link is not None:
                        raise self._corrupt(index, offset, "an extended header without its entry")
                    self._end_marker(index, offset)
                    return
                header = self._parse(block, index, offset)
                kind = header.type
                if kind in (b"x", b"g", b"X"):
                    records = self._extended(header, index, offset, "PAX extended header")
                    parsed = self._pax(records, index, offset)
                    (globals_ if kind == b"g" else pax).update(parsed)
                    continue
                if kind in (b"L", b"K"):
                    data = self._extended(header, index, offset, "GNU long name")
                    if kind == b"L":
                        long_name = _nts(data)
                    else:
                        long_link = _nts(data)
                    continue
                break
            if index > limits.archive_entries:
                raise StoreError(
                    f"{self.where}: more than {limits.archive_entries:,} entries; "
                    + over("archive_entries", limits.archive_entries, "entries")
                )
            merged = {**globals_, **pax}
            entry = self._entry_of(header, merged, long_name, long_link, index, start)
            self._entry = entry
            self._left = entry.size
            self._pad = -entry.size % BLOCK
            self._last = entry.name
            yield entry

    def _end_marker(self, index: int, offset: int) -> None:
        second = self._read_exact(BLOCK)
        if second == _ZERO or not second:
            return
        if len(second) < BLOCK:
            raise self._truncated("the stream ends inside the end-of-archive marker")
        raise self._corrupt(
            index, offset, "a zero block followed by more data (a damaged or concatenated archive)"
        )

    def _parse(self, block: bytes, index: int, offset: int) -> _Header:
        try:
            chksum = self._octal(block[148:156], "checksum")
        except ValueError:
            raise self._corrupt(index, offset, "bad header checksum field") from None
        unsigned = sum(block[:148]) + 256 + sum(block[156:])
        signed = unsigned - sum(b for b in block[:148] + block[156:] if b > 127) * 2
        if chksum not in (unsigned, signed):
            raise self._corrupt(index, offset, "bad header checksum")
        numbers: dict[str, int] = {}
        try:
            for name, lo, hi in _NUMBER_FIELDS:
                numbers[name] = self._number(block[lo:hi], name)
        except ValueError as exc:
            raise self._corrupt(index, offset, str(exc)) from None
        for name in ("size", "uid", "gid", "mode"):
            if numbers[name] < 0:
                raise self._corrupt(index, offset, f"negative {name}")
        raw_name = _nts(block[0:100])
        if block[257:263] == _POSIX_MAGIC:
            prefix = _nts(block[345:500])
            if prefix:
                raw_name = prefix + b"/" + raw_name
        return _Header(block[156:157], raw_name, _nts(block[157:257]), numbers)

    @staticmethod
    def _octal(raw: bytes, what: str) -> int:
        text = _nts(raw).strip(b" ")
        if not text:
            return 0
        if not all(48 <= c <= 55 for c in text):
            raise ValueError(f"bad {what} field {raw!r}")
        return int(text, 8)

    @classmethod
    def _number(cls, raw: bytes, what: str) -> int:
        if raw[0] & 0x80:  # GNU base-256, two's complement when the first byte is 0xff
            value = int.from_bytes(raw[1:], "big")
            if raw[0] == 0xFF:
                return value - (1 << (8 * (len(raw) - 1)))
            return value + ((raw[0] & 0x7F) << (8 * (len(raw) - 1)))
        return cls._octal(raw, what)

    def _extended(self, header: _Header, index: int, offset: int, what: str) -> bytes:
        size = header.numbers["size"]
        limit = self.limits.header_bytes
        if size > limit:
            raise StoreError(
                f"{self.where}: entry {index} (header at offset {offset}{self._after()}): "
                f"{what} of {size:,} bytes; " + over("header_bytes", limit)
            )
        data = self._read_exact(size)
        if len(data) < size:
            raise self._truncated(
                f"entry {index}{self._after()}: the stream ends inside its {what}"
            )
        pad = -size % BLOCK
        if len(self._read_exact(pad)) < pad:
            raise self._truncated(
                f"entry {index}{self._after()}: the stream ends inside its {what}"
            )
        return data

    def _pax(self, data: bytes, index: int, offset: int) -> dict[str, str]:
        out: dict[str, str] = {}
        pos = 0
        while pos < len(data):
            if not data[pos:].strip(b"\0"):
                break  # trailing NUL padding some writers leave
            space = data.find(b" ", pos, pos + 20)
            digits = data[pos:space] if space > pos else b""
            if not digits.isdigit():
                raise self._corrupt(index, offset, f"bad PAX record at byte {pos}")
            length = int(digits)
            record = data[pos : pos + length]
            if length < 5 or len(record) < length or not record.endswith(b"\n"):
                raise self._corrupt(index, offset, f"bad PAX record length at byte {pos}")
            key, eq, value = record[space - pos + 1 : -1].partition(b"=")
            if not eq or not key:
                raise self._corrupt(index, offset, f"bad PAX record at byte {pos}")
            out[_decode(key)] = _decode(value)
            pos += length
        return out

    def _entry_of(
        self,
        header: _Header,
        pax: Mapping[str, str],
        long_name: bytes | None,
        long_link: bytes | None,
        index: int,
        start: int,
    ) -> TarEntry:
        kind = header.type
        name = pax["path"] if "path" in pax else _decode(long_name or header.name)
        link = pax["linkpath"] if "linkpath" in pax else _decode(long_link or header.linkname)
        numbers: dict[str, int | float] = dict(header.numbers)
        shown = f'entry {index} "{shown_name(name)}"'
        for key in ("size", "uid", "gid", "mtime"):
            if key in pax:
                try:
                    value = float(pax[key]) if key == "mtime" else int(pax[key])
                except ValueError:
                    raise StoreError(
                        f"{self.where}: {shown}: corrupt: bad PAX {key} {pax[key][:40]!r}"
                    ) from None
                if key != "mtime" and int(value) < 0:
                    raise StoreError(f"{self.where}: {shown}: corrupt: negative {key}")
                numbers[key] = int(value) if key != "mtime" or float(value).is_integer() else value
        if kind == b"S" or any(k.startswith("GNU.sparse.") for k in pax):
            raise StoreError(f"{self.where}: {shown}: sparse files are not supported in layers")
        if kind in (b"\0", b"7", b""):
            kind = b"5" if kind == b"\0" and name.endswith("/") and "path" not in pax else b"0"
        if kind and kind[0] in _HEADER_ONLY:
            numbers["size"] = 0
        self._check_path(name, shown, "path")
        if link:
            self._check_path(link, shown, "link target")
        return TarEntry(
            index=index,
            offset=start,
            name=name,
            type=kind,
            mode=int(numbers["mode"]),
            uid=int(numbers["uid"]),
            gid=int(numbers["gid"]),
            size=int(numbers["size"]),
            mtime=numbers["mtime"],
            linkname=link,
            devmajor=int(numbers["devmajor"]),
            devminor=int(numbers["devminor"]),
            pax_headers=dict(pax),
        )

    def _check_path(self, name: str, shown: str, what: str) -> None:
        limits = self.limits
        raw = os.fsencode(name)
        if len(raw) > limits.path_bytes:
            raise StoreError(
                f"{self.where}: {shown}: {what} of {len(raw):,} bytes; "
                + over("path_bytes", limits.path_bytes)
            )
        depth = raw.count(b"/") + 1  # cheap upper bound first; exact when it may be over
        if depth > limits.path_depth:
            depth = sum(1 for p in raw.split(b"/") if p)
        if depth > limits.path_depth:
            raise StoreError(
                f"{self.where}: {shown}: {what} {depth:,} levels deep; "
                + over("path_depth", limits.path_depth, "levels")
            )


def _file_size(stream: BinaryIO) -> int | None:
    """The size of ``stream`` when it is a seekable regular file positioned at 0."""
    try:
        if not stream.seekable() or stream.tell() != 0:
            return None
        return os.fstat(stream.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        return None
