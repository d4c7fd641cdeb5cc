"""Layer directories <-> layer tar streams. The format and its shared constants.

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

This module holds the format's constants, value types and the PAX header encoder;
:mod:`.tarwrite`, :mod:`.tarread` and :mod:`.extract` do the work.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.digest import DiffID

OPAQUE_XATTR = "trusted.overlay.opaque"
WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"

BLOCK = 512
RECORD = 20 * BLOCK  # tarfile pads the archive to a multiple of this
CHUNK = 1 << 20
_NUL = b"\0"

# Overlay-internal xattrs are never part of a layer's content; the SELinux label is
# host policy, not image content. Everything else (security.capability, user.*,
# POSIX ACLs) travels as SCHILY.xattr records.
_SKIP_XATTR_PREFIXES = ("trusted.", "user.overlay.")
_SKIP_XATTRS = frozenset({"security.selinux"})
# Overlay features whose upperdir is not a self-contained diff: refuse, don't guess.
UNSUPPORTED_OVERLAY = ("trusted.overlay.redirect", "trusted.overlay.metacopy")


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """The identity of a layer's tar form: ``diff_id`` (``sha256:<hex>``) and byte size."""

    diff_id: DiffID
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


def keep_xattr(name: str) -> bool:
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


def entry_header(
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
