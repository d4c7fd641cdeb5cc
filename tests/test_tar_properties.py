"""Property tests for the tar reader and the extractor on mutated archives: whatever
the bytes, extraction either succeeds and round-trips (the layer directory's own tar
extracts to the same directory), or refuses with a one-line StoreError /
UnsafePathError naming the archive; never anything else."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import StoreError, UnsafePathError
from pipeline.fs.extract import extract_layer
from pipeline.fs.tarstream import TarReader
from pipeline.fs.tarwrite import layer_info, write_layer

WHERE = "mutant.tar"
NAMES = st.lists(
    st.sampled_from(["a", "b", "dir", "é", "x" * 120, ".wh.a", "."]), min_size=1, max_size=3
)
ENTRY = st.tuples(
    NAMES.map("/".join),
    st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"]),
    st.binary(max_size=1500),
    st.sampled_from([0o644, 0o755, 0o4755, 0o600]),
)
FORMATS = st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])


def build(entries: list[tuple[str, str, bytes, int]], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, kind, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = 1_700_000_000
            if kind == "file":
                info.size = len(data)
                try:
                    tf.addfile(info, io.BytesIO(data))
                except ValueError:  # a name the format cannot hold
                    continue
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            info.linkname = entries[0][0] if kind == "hardlink" else "target/" + name
            try:
                tf.addfile(info)
            except ValueError:
                continue
    return buf.getvalue()


MUTATIONS = st.one_of(
    st.just(("none", 0, b"")),
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=1)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.just(b"")),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=700)),
    st.tuples(st.just("zero-block"), st.integers(0, 128), st.just(b"")),
    st.tuples(st.just("drop-block"), st.integers(0, 128), st.just(b"")),
)


def mutate(data: bytes, mutation: tuple[str, int, bytes]) -> bytes:
    kind, at, extra = mutation
    if not data:
        return data
    if kind == "flip":
        i = at % len(data)
        return data[:i] + bytes([data[i] ^ (extra[0] or 1)]) + data[i + 1 :]
    if kind == "truncate":
        return data[: at % len(data)]
    if kind == "insert":
        i = at % len(data)
        return data[:i] + extra + data[i:]
    blocks = len(data) // 512
    i = (at % blocks) * 512
    if kind == "zero-block":
        return data[:i] + bytes(512) + data[i + 512 :]
    if kind == "drop-block":
        return data[:i] + data[i + 512 :]
    return data


def tree(root: Path) -> list[tuple[str, int, bytes]]:
    """(path, mode, content or link target) of everything below ``root``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            st_ = path.lstat()
            if stat.S_ISLNK(st_.st_mode):
                body = os.readlink(path).encode()
            elif stat.S_ISREG(st_.st_mode):
                body = path.read_bytes()
            else:
                body = b""
            out.append((str(path.relative_to(root)), st_.st_mode, body))
    return sorted(out)


def refused_in_one_line(exc: Exception) -> None:
    text = str(exc)
    assert text.startswith(WHERE + ": "), text
    assert "\n" not in text, text


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(ENTRY, min_size=1, max_size=6), FORMATS, MUTATIONS)
def test_extract_accepts_and_round_trips_or_refuses(
    entries: list[tuple[str, str, bytes, int]], fmt: int, mutation: tuple[str, int, bytes]
) -> None:
    data = mutate(build(entries, fmt), mutation)
    with tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "first"
        try:
            report = extract_layer(io.BytesIO(data), first, WHERE)
        except (StoreError, UnsafePathError) as exc:
            refused_in_one_line(exc)
            return
        assert report.size == len(data)
        # accepted: the directory's own tar must bring back the same directory
        again = io.BytesIO()
        info = write_layer(first, again, 0)
        second = Path(tmp) / "second"
        extract_layer(io.BytesIO(again.getvalue()), second, "round-trip")
        assert tree(second) == tree(first)
        assert layer_info(second, 0) == info


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ENTRY, min_size=1, max_size=6), FORMATS, MUTATIONS)
def test_reader_reads_every_entry_or_refuses(
    entries: list[tuple[str, str, bytes, int]], fmt: int, mutation: tuple[str, int, bytes]
) -> None:
    original = build(entries, fmt)
    data = mutate(original, mutation)
    reader = TarReader(io.BytesIO(data), WHERE)
    got = []
    try:
        for entry in reader.entries():
            body = b""
            while chunk := reader.read(256):
                body += chunk
            assert len(body) == entry.size
            got.append((entry.name, entry.type, body))
    except StoreError as exc:
        refused_in_one_line(exc)
        return
    if data == original:  # unmutated: exactly what tarfile reads
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            expected = [
                (m.name, m.type if m.type != tarfile.AREGTYPE else tarfile.REGTYPE)
                for m in tf.getmembers()
            ]
        assert [(n.rstrip("/") if t == b"5" else n, t) for n, t, _ in got] == expected


@given(st.binary(max_size=4096))
@settings(max_examples=300, deadline=None)
def test_random_bytes_are_refused_or_read(data: bytes) -> None:
    reader = TarReader(io.BytesIO(data), WHERE)
    try:
        for _ in reader.entries():
            while reader.read():
                pass
    except StoreError as exc:
        refused_in_one_line(exc)
