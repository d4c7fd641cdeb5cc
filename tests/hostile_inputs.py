"""Makers of hostile inputs for the readers' tests: damaged and oversized tar streams,
decompression bombs, OCI layouts and docker-archives, spec files.

Huge inputs are never written out in full: a gzip file may hold several members, so
a bomb is one small member for its start, one member for a 1 MiB chunk repeated
(compressed once, written N times) and one for its end. ``gzip`` and every reader
see one continuous stream."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path

BLOCK = 512
MiB = 1 << 20
GiB = 1 << 30


def header(
    name: str,
    size: int = 0,
    kind: bytes = tarfile.REGTYPE,
    fmt: int = tarfile.USTAR_FORMAT,
    linkname: str = "",
    mode: int = 0o644,
) -> bytes:
    """The header block(s) tarfile writes for one member."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info.tobuf(format=fmt, encoding="utf-8", errors="surrogateescape")


def pad(n: int) -> bytes:
    return b"\0" * (-n % BLOCK)


def member(name: str, data: bytes = b"", **kw: object) -> bytes:
    return header(name, len(data), **kw) + data + pad(len(data))  # type: ignore[arg-type]


END = b"\0" * (2 * BLOCK)


def tar_of(members: Iterable[bytes], end: bytes = END) -> bytes:
    return b"".join(members) + end


def with_checksum(block: bytes) -> bytes:
    """``block`` with its header checksum recomputed (for crafted fields)."""
    raw = bytearray(block)
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\0 " % sum(raw)
    return bytes(raw)


def negative_size_header(name: str) -> bytes:
    """A header whose size field is -1 in GNU base-256, with a valid checksum."""
    raw = bytearray(header(name, 0))
    raw[124:136] = b"\xff" * 12
    return with_checksum(bytes(raw))


def gzip_member(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def write_repeated_gzip(path: Path, head: bytes, chunk: bytes, count: int, tail: bytes) -> int:
    """Write gzip(head + chunk * count + tail) as gzip members; the decompressed size."""
    once = gzip_member(chunk)
    with open(path, "wb") as f:
        f.write(gzip_member(head))
        for _ in range(count):
            f.write(once)
        f.write(gzip_member(tail))
    return len(head) + len(chunk) * count + len(tail)


def pax_record(key: str, value_len: int) -> tuple[bytes, int]:
    """The start of a PAX record ``"<len> key="`` for a value of ``value_len`` bytes
    (the value and the final newline follow), and the record's full length."""
    base = len(key) + value_len + 3
    n = p = 0
    while True:
        n = base + len(str(p))
        if n == p:
            break
        p = n
    return f"{p} {key}=".encode(), p


def write_pax_path_bomb(path: Path, path_bytes: int = GiB) -> None:
    """A gzip'd tar whose first member has a PAX ``path`` of ``path_bytes`` bytes."""
    start, length = pax_record("path", path_bytes)
    pax_head = header("././@PaxHeader", length, tarfile.XHDTYPE)
    chunk = b"a" * MiB
    count, rest = divmod(path_bytes, MiB)
    tail = b"a" * rest + b"\n" + pad(length) + header("x", 0) + END
    write_repeated_gzip(path, pax_head + start, chunk, count, tail)


def write_zero_bomb(path: Path, total: int = 10 * GiB, name: str = "zeros") -> None:
    """A gzip'd tar holding one file of ``total`` zero bytes."""
    count, rest = divmod(total, MiB)
    tail = b"\0" * rest + pad(total) + END
    write_repeated_gzip(path, header(name, total, fmt=tarfile.GNU_FORMAT), b"\0" * MiB, count, tail)


def write_deep_tree(path: Path, depth: int = 5000) -> None:
    """A gzip'd PAX tar of ``depth`` nested directories ``d/d/d/...``."""
    with gzip.open(path, "wb", compresslevel=1) as gz:
        for i in range(1, depth + 1):
            gz.write(header("d/" * i, 0, tarfile.DIRTYPE, tarfile.PAX_FORMAT, mode=0o755))
        gz.write(END)


def sparse_header(name: str, realsize: int) -> bytes:
    """An old-GNU sparse member ('S') claiming ``realsize`` bytes with no data."""
    raw = bytearray(header(name, 0, fmt=tarfile.GNU_FORMAT))
    raw[156:157] = b"S"
    raw[483:495] = b"\x80" + realsize.to_bytes(11, "big")  # GNU realsize, base-256
    return with_checksum(bytes(raw))


# ---------------------------------------------------------------------------------------
# image layouts and archives


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_layout(root: Path, manifest: dict[str, object] | bytes, media_type: str) -> str:
    """An OCI layout at ``root`` whose index points at ``manifest``; its digest."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    digest = digest_of(data)
    (blobs / digest[7:]).write_bytes(data)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": media_type, "digest": digest, "size": len(data)}],
    }
    (root / "index.json").write_text(json.dumps(index))
    return digest


def docker_archive(path: Path, layer: bytes, cut: int | None = None) -> None:
    """A docker-archive with one layer ``layer``; with ``cut``, the archive file is
    truncated to its first ``cut`` bytes."""
    diff_id = digest_of(layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    config_name = digest_of(config)[7:] + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in (
            ("manifest.json", manifest.encode()),
            (config_name, config),
            ("l/layer.tar", layer),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    path.write_bytes(data if cut is None else data[:cut])


def deflate_ratio(data: bytes) -> float:
    return len(data) / max(1, len(zlib.compress(data)))
