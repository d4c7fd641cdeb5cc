"""Layer dirs <-> tar: determinism, overlay whiteouts both ways, hostile tars, and
checks of our tars by tools we did not write (tarfile as a byte oracle, GNU tar, umoci).
Runs as root (CI is root): whiteouts are char devices and owners are kept."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import random
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import StoreError, UnsafePathError
from pipeline.fs.extract import extract_layer
from pipeline.fs.tarformat import OPAQUE_XATTR, ExtractReport, LayerInfo
from pipeline.fs.tarwrite import layer_info, write_layer

# security.capability v2 for cap_net_bind_service (bit 10), permitted + effective
CAP_NET_BIND = bytes([0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0]) + bytes(8)
# a value that is not valid UTF-8 (forces hdrcharset=BINARY in tarfile)
CAP_ALL = bytes([0x01, 0x00, 0x00, 0x02, 0xFF, 0xFF, 0xFF, 0xFF]) + bytes(12)


def tar_bytes(root: Path, epoch: int = 0) -> tuple[bytes, LayerInfo]:
    buf = io.BytesIO()
    info = write_layer(root, buf, epoch)
    return buf.getvalue(), info


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def is_whiteout(path: Path) -> bool:
    st = path.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


# -- a rich tree, buildable in two orders ----------------------------------------------


def _steps(root: Path) -> list[Callable[[], None]]:
    def mkdir(rel: str, mode: int = 0o755, uid: int = 0) -> Callable[[], None]:
        def do() -> None:
            (root / rel).mkdir()
            os.chown(root / rel, uid, uid)
            (root / rel).chmod(mode)

        return do

    def write(rel: str, data: bytes, mode: int = 0o644, uid: int = 0) -> Callable[[], None]:
        def do() -> None:
            (root / rel).write_bytes(data)
            os.chown(root / rel, uid, uid)
            (root / rel).chmod(mode)

        return do

    def special() -> None:
        os.symlink("../etc/passwd", root / "usr/bin/abs-rel-link")
        os.symlink("/bin/busybox", root / "usr/bin/sh")
        os.link(root / "usr/bin/tool", root / "usr/bin/tool-hardlink")
        os.link(root / "usr/bin/tool", root / "a-hardlink-first")
        os.mkfifo(root / "var/fifo")
        whiteout(root / "etc/removed")
        whiteout(root / "var/gone-dir")
        os.setxattr(root / "var/opaque", OPAQUE_XATTR, b"y")
        os.setxattr(root / "usr/bin/ping", "security.capability", CAP_NET_BIND)
        os.setxattr(root / "usr/bin/allcaps", "security.capability", CAP_ALL)
        os.setxattr(root / "etc/conf", "user.comment", "é-ok".encode())
        os.setxattr(root / "etc/conf", "trusted.overlay.origin", b"dropped")

    long_dir = "d" * 120
    return [
        mkdir("etc"),
        mkdir("usr"),
        mkdir("usr/bin"),
        mkdir("var"),
        mkdir("var/opaque", 0o700),
        mkdir("tmp", 0o1777),
        mkdir("home-app", 0o750, uid=1000),
        mkdir(long_dir),
        write("etc/conf", b"key=value\n"),
        write("etc/shadow", b"root:*:1::::::\n", 0o640),
        write("usr/bin/tool", b"\x7fELF" + bytes(3000), 0o755),
        write("usr/bin/ping", b"ping", 0o755),
        write("usr/bin/allcaps", b"caps", 0o755),
        write("usr/bin/su", b"su", 0o4755),
        write("usr/bin/wall", b"wall", 0o2755),
        write("var/opaque/kept", b"in this layer"),
        write("home-app/big", random.Random(1).randbytes(3 << 20), 0o600, uid=1000),
        write("home-app/bigid", b"x", 0o644, uid=3_000_000),  # > 8**7-1: PAX uid
        write(f"{long_dir}/{'f' * 120}", b"long path"),
        write("caf\u00e9", b"utf-8 name"),
        write(os.fsdecode(b"latin1-\xe9"), b"not utf-8 name"),
        write("empty", b""),
        special,
    ]


def build_tree(root: Path, reverse: bool = False, mtime: int = 1_700_000_000) -> Path:
    """The same tree whatever ``reverse`` says; mtimes differ with ``mtime``."""
    root.mkdir()
    steps = _steps(root)
    structural, files, special = steps[:8], steps[8:-1], steps[-1]
    for step in structural:
        step()
    for step in reversed(files) if reverse else files:
        step()
    special()
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, ns=(mtime * 10**9, mtime * 10**9), follow_symlinks=False)
    return root


def reference_tar(root: Path, epoch: int) -> bytes:
    """The layer tar as specified, written by tarfile itself (slow, independent)."""
    rootb = os.fsencode(root)
    items: list[tuple[bytes, tarfile.TarInfo, bytes | None]] = []
    for dirpath, dirnames, filenames in os.walk(rootb):
        for n in dirnames + filenames:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, rootb)
            st = os.lstat(full)
            ti = tarfile.TarInfo(os.fsdecode(rel))
            ti.mode, ti.uid, ti.gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
            ti.mtime = min(st.st_mtime_ns // 10**9, epoch)
            ti.uname = ti.gname = ""
            xattrs = {}
            for name in sorted(os.listxattr(full, follow_symlinks=False)):
                if not name.startswith("trusted."):
                    value = os.getxattr(full, name, follow_symlinks=False)
                    xattrs["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
            ti.pax_headers = xattrs
            key = rel
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
                if OPAQUE_XATTR in os.listxattr(full) and os.getxattr(full, OPAQUE_XATTR) == b"y":
                    marker = tarfile.TarInfo(os.fsdecode(rel + b"/.wh..wh..opq"))
                    marker.mode, marker.mtime = 0o600, ti.mtime
                    items.append((rel + b"/", marker, None))
            elif stat.S_ISLNK(st.st_mode):
                ti.type, ti.linkname = tarfile.SYMTYPE, os.fsdecode(os.readlink(full))
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
            elif stat.S_ISCHR(st.st_mode):
                key = os.path.join(os.path.dirname(rel), b".wh." + n)
                ti = tarfile.TarInfo(os.fsdecode(key))
                ti.mode, ti.mtime = 0o600, min(st.st_mtime_ns // 10**9, epoch)
            else:
                ti.size = st.st_size
                items.append((key, ti, full))
                continue
            items.append((key, ti, None))
    items.sort(key=lambda item: item[0])
    out = io.BytesIO()
    seen: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tf:
        for _, ti, full in items:
            if full is None:
                tf.addfile(ti)
                continue
            st = os.lstat(full)
            if st.st_nlink > 1 and (st.st_dev, st.st_ino) in seen:
                ti.type, ti.size = tarfile.LNKTYPE, 0
                ti.linkname = seen[(st.st_dev, st.st_ino)]
                tf.addfile(ti)
                continue
            seen[(st.st_dev, st.st_ino)] = ti.name
            with open(full, "rb") as f:
                tf.addfile(ti, f)
    return out.getvalue()


# -- determinism and round trips --------------------------------------------------------


def test_equal_trees_give_identical_bytes(tmp_path: Path) -> None:
    a = build_tree(tmp_path / "a", mtime=1_700_000_000)
    b = build_tree(tmp_path / "b", reverse=True, mtime=1_600_000_000)
    data_a, info_a = tar_bytes(a)
    data_b, info_b = tar_bytes(b)
    assert data_a == data_b
    assert info_a == info_b
    assert info_a.diff_id == "sha256:" + hashlib.sha256(data_a).hexdigest()
    assert info_a.size == len(data_a) and info_a.size % 10240 == 0
    assert layer_info(a) == info_a
    # above the epoch, real mtimes show, so different mtimes give different bytes
    assert tar_bytes(a, epoch=2_000_000_000)[0] != tar_bytes(b, epoch=2_000_000_000)[0]


@pytest.mark.parametrize("epoch", [0, 1_650_000_000, 2_000_000_000])
def test_bytes_equal_tarfile_reference(tmp_path: Path, epoch: int) -> None:
    root = build_tree(tmp_path / "t")
    data, info = tar_bytes(root, epoch)
    assert data == reference_tar(root, epoch)
    assert layer_info(root, epoch) == info


def test_entries_as_specified(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "t")
    data, _ = tar_bytes(root)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    raw = [os.fsencode(n) for n in names]
    assert raw == sorted(raw, key=lambda n: n if not n.endswith(b".wh..wh..opq") else n[:-12])
    by = {m.name: m for m in members}
    assert all(m.uname == "" and m.gname == "" and m.mtime == 0 for m in members)
    assert by["etc/.wh.removed"].isreg() and by["etc/.wh.removed"].size == 0
    assert by["var/.wh.gone-dir"].isreg()
    assert by["var/opaque/.wh..wh..opq"].isreg()
    assert names.index("var/opaque/.wh..wh..opq") < names.index("var/opaque/kept")
    assert by["usr/bin/su"].mode == 0o4755 and by["usr/bin/wall"].mode == 0o2755
    assert by["tmp"].mode == 0o1777
    assert by["home-app"].uid == 1000 and by["home-app/bigid"].uid == 3_000_000
    # the first path in sorted order of an inode is the file, the others link to it
    assert by["a-hardlink-first"].isreg()
    assert by["usr/bin/tool"].islnk() and by["usr/bin/tool"].linkname == "a-hardlink-first"
    assert by["usr/bin/tool-hardlink"].linkname == "a-hardlink-first"
    assert by["usr/bin/sh"].issym() and by["usr/bin/sh"].linkname == "/bin/busybox"
    assert by["var/fifo"].isfifo()
    ping = by["usr/bin/ping"].pax_headers
    assert ping["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == (
        CAP_NET_BIND
    )
    conf = by["etc/conf"].pax_headers
    assert "SCHILY.xattr.user.comment" in conf
    assert not any(k.startswith("SCHILY.xattr.trusted.") for m in members for k in m.pax_headers)
    for m in members:
        assert m.pax_headers.get("atime") is None and m.pax_headers.get("ctime") is None


def test_round_trip_dir_tar_dir_tar(tmp_path: Path) -> None:
    for epoch in (0, 2_000_000_000):
        root = build_tree(tmp_path / f"src-{epoch}")
        data, info = tar_bytes(root, epoch)
        dest = tmp_path / f"dest-{epoch}"
        report = extract_layer(io.BytesIO(data), dest, "layer.tar")
        assert report.diff_id == info.diff_id and report.size == info.size
        assert report.skipped == ()
        again, info2 = tar_bytes(dest, epoch)
        assert again == data and info2 == info
    dest = tmp_path / "dest-0"
    assert is_whiteout(dest / "etc/removed") and is_whiteout(dest / "var/gone-dir")
    assert os.getxattr(dest / "var/opaque", OPAQUE_XATTR) == b"y"
    assert os.getxattr(dest / "usr/bin/ping", "security.capability") == CAP_NET_BIND
    assert os.getxattr(dest / "usr/bin/allcaps", "security.capability") == CAP_ALL
    assert "trusted.overlay.origin" not in os.listxattr(dest / "etc/conf")
    su = (dest / "usr/bin/su").stat()
    assert stat.S_IMODE(su.st_mode) == 0o4755
    tool = (dest / "usr/bin/tool").stat()
    assert tool.st_nlink == 3 and tool.st_ino == (dest / "a-hardlink-first").stat().st_ino
    assert (dest / "home-app/big").stat().st_uid == 1000
    assert os.readlink(dest / "usr/bin/sh") == "/bin/busybox"


def test_tools_we_did_not_write_read_it(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "t")
    data, _ = tar_bytes(root)
    (tmp_path / "layer.tar").write_bytes(data)
    listing = subprocess.run(
        ["tar", "--numeric-owner", "-tvf", str(tmp_path / "layer.tar")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = {line.split(maxsplit=5)[5]: line for line in listing.splitlines()}
    assert lines["usr/bin/su"].startswith("-rwsr-xr-x 0/0")
    assert lines["etc/.wh.removed"].startswith("-rw------- 0/0")
    assert lines["usr/bin/tool link to a-hardlink-first"].startswith("hrwxr-xr-x")
    assert lines["usr/bin/sh -> /bin/busybox"].startswith("lrwxrwxrwx")
    assert lines["home-app/bigid"].startswith("-rw-r--r-- 3000000/3000000")
    assert f"{'d' * 120}/{'f' * 120}" in lines
    # GNU tar extracts it too, with xattrs
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "-xpf", str(tmp_path / "layer.tar"), "-C", out],
        check=True,
    )
    assert os.getxattr(out / "usr/bin/ping", "security.capability") == CAP_NET_BIND
    assert (out / "home-app/big").read_bytes() == (root / "home-app/big").read_bytes()


def _oci_layout(layout: Path, layers: list[bytes], tag: str) -> None:
    blobs = layout / "blobs/sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    diff_ids = ["sha256:" + hashlib.sha256(d).hexdigest() for d in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **put(json.dumps(config).encode()),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", **put(d)} for d in layers
        ],
    }
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **put(json.dumps(manifest).encode()),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def test_umoci_unpacks_our_layers_and_honours_whiteouts(tmp_path: Path) -> None:
    lower = build_tree(tmp_path / "lower")
    (lower / "var/opaque/from-lower").write_text("hidden by the opaque dir above")
    (lower / "etc/removed").unlink()
    (lower / "etc/removed").write_text("hidden by the whiteout above")
    (lower / "var/gone-dir").unlink()
    (lower / "var/gone-dir").mkdir()
    (lower / "var/gone-dir/inner").write_text("hidden")
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    whiteout(upper / "etc/conf")
    (upper / "var").mkdir()
    (upper / "var/opaque").mkdir()
    os.setxattr(upper / "var/opaque", OPAQUE_XATTR, b"y")
    (upper / "var/opaque/new").write_text("new")
    (upper / "added").write_text("added")
    layout = tmp_path / "layout"
    _oci_layout(layout, [tar_bytes(lower)[0], tar_bytes(upper)[0]], "v1")
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:v1", str(bundle)],
        check=True,
        capture_output=True,
    )
    rootfs = bundle / "rootfs"
    assert (rootfs / "added").read_text() == "added"
    assert not (rootfs / "etc/conf").exists()  # whiteout in the upper layer
    assert (rootfs / "etc/removed").read_text() == "hidden by the whiteout above"
    assert sorted(p.name for p in (rootfs / "var/opaque").iterdir()) == ["new"]
    assert stat.S_IMODE((rootfs / "usr/bin/su").stat().st_mode) == 0o4755
    assert (rootfs / "usr/bin/tool").stat().st_ino == (rootfs / "a-hardlink-first").stat().st_ino
    assert os.readlink(rootfs / "usr/bin/sh") == "/bin/busybox"
    assert os.getxattr(rootfs / "usr/bin/ping", "security.capability") == CAP_NET_BIND


# -- compression and corruption ---------------------------------------------------------


def test_extract_detects_compression(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "t")
    data, info = tar_bytes(root)
    for name, packed in (
        ("gz", gzip.compress(data, mtime=0)),
        ("xz", lzma.compress(data)),
        ("plain", data),
    ):
        report = extract_layer(io.BytesIO(packed), tmp_path / name, f"layer.{name}")
        assert report.diff_id == info.diff_id, name
        assert tar_bytes(tmp_path / name)[0] == data


def test_extract_refuses_zstd_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"^layer.zst: .*zstandard"):
        extract_layer(io.BytesIO(b"\x28\xb5\x2f\xfd" + bytes(100)), tmp_path / "z", "layer.zst")
    data, _ = tar_bytes(build_tree(tmp_path / "t"))
    packed = gzip.compress(data, mtime=0)
    with pytest.raises(StoreError, match=r"^cut.gz: corrupt or truncated"):
        extract_layer(io.BytesIO(packed[: len(packed) // 2]), tmp_path / "cut", "cut.gz")
    with pytest.raises(StoreError, match=r"^cut.tar: "):
        extract_layer(io.BytesIO(data[:1500]), tmp_path / "cut2", "cut.tar")


# -- refusals on write ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda r: (r / ".wh.sneaky").write_text("x"), r"'\.wh\.sneaky'.*reserved"),
        (lambda r: (r / "d").mkdir() or (r / "d/.wh..wh..opq").write_text(""), r"reserved"),
        (lambda r: os.mknod(r / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3)), "device"),
        (lambda r: os.mknod(r / "loop", stat.S_IFBLK | 0o666, os.makedev(7, 0)), "device"),
    ],
)
def test_write_refuses(tmp_path: Path, make: Callable[[Path], object], match: str) -> None:
    root = tmp_path / "layer"
    root.mkdir()
    make(root)
    with pytest.raises(UnsafePathError, match=f"^{root}: refused path .*{match}"):
        write_layer(root, io.BytesIO())
    with pytest.raises(UnsafePathError):
        layer_info(root)


def test_write_refuses_socket(tmp_path: Path) -> None:
    import socket

    root = tmp_path / "layer"
    root.mkdir()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(root / "sock"))
        with pytest.raises(UnsafePathError, match="socket"):
            layer_info(root)


def test_write_refuses_overlay_redirect(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    (root / "moved").mkdir(parents=True)
    os.setxattr(root / "moved", "trusted.overlay.redirect", b"/old")
    with pytest.raises(StoreError, match="redirect_dir=off"):
        layer_info(root)


# -- hostile tars -----------------------------------------------------------------------


@dataclass(frozen=True)
class M:
    """One member of a hostile tar."""

    name: str
    kind: str = "file"  # file, dir, symlink, hardlink, chr, blk, fifo
    target: str = ""
    data: bytes = b"pwned"


def hostile_tar(members: list[M], canary: Path) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            ti = tarfile.TarInfo(m.name)
            target = m.target.replace("CANARY", str(canary))
            if m.kind == "file":
                ti.size = len(m.data)
                tf.addfile(ti, io.BytesIO(m.data))
                continue
            ti.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "blk": tarfile.BLKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[m.kind]
            ti.linkname = target
            ti.mode = 0o777 if m.kind == "dir" else 0o644
            if m.kind in ("chr", "blk"):
                ti.devmajor, ti.devminor = 1, 3
            tf.addfile(ti)
    return out.getvalue()


REFUSED = [
    ("dotdot", [M("../x")], "'..'"),
    ("absolute", [M("/abs")], "absolute"),
    ("dotdot-inside", [M("a/../../x")], "'..'"),
    ("symlink-then-file", [M("l", "symlink", "CANARY"), M("l/x")], "symlink"),
    ("symlink-relative", [M("l", "symlink", "../canary"), M("l/x")], "symlink"),
    ("symlink-inside", [M("d", "dir"), M("l", "symlink", "d"), M("l/x")], "symlink"),
    ("symlink-to-etc", [M("etc", "symlink", "/etc"), M("etc/pipeline-canary-x")], "symlink"),
    ("symlink-deep", [M("a/b", "dir"), M("a/b/c", "symlink", "CANARY"), M("a/b/c/d/e")], "symlink"),
    (
        "dir-replaced-by-symlink",
        [M("d", "dir"), M("d/ok"), M("d", "symlink", "CANARY"), M("d/x")],
        "symlink",
    ),
    ("whiteout-through-symlink", [M("l", "symlink", "CANARY"), M("l/.wh.secret")], "symlink"),
    ("opaque-through-symlink", [M("l", "symlink", "CANARY"), M("l/.wh..wh..opq")], "symlink"),
    ("hardlink-dotdot", [M("h", "hardlink", "../../etc/passwd")], "'..'"),
    ("hardlink-absolute", [M("h", "hardlink", "CANARY/secret")], "absolute"),
    ("hardlink-missing", [M("h", "hardlink", "later"), M("later")], "not \\(yet\\)"),
    (
        "hardlink-through-symlink",
        [M("l", "symlink", "CANARY"), M("h", "hardlink", "l/secret")],
        "symlink",
    ),
    ("hardlink-to-dir", [M("d", "dir"), M("h", "hardlink", "d")], "directory"),
    ("hardlink-to-self", [M("h", "hardlink", "h")], "itself"),
    ("hardlink-replacing-its-dir", [M("d/x"), M("d", "hardlink", "d/x")], "gone"),
    ("file-as-parent", [M("f"), M("f/x")], "not a directory"),
    ("whiteout-dotdot", [M("a/.wh...")], "valid name"),
]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, Path, Callable[[], None]]]:
    """(dest, canary, check): ``check`` asserts nothing changed outside dest."""
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "secret").write_text("untouched")
    dest = tmp_path / "dest"
    before = sorted(os.listdir(tmp_path))
    etc_before = sorted(os.listdir("/etc"))

    def snapshot() -> list[tuple[str, int, int, bytes]]:
        out = []
        for p in [*sorted(canary.rglob("*")), canary]:
            st = p.lstat()
            data = p.read_bytes() if p.is_file() else b""
            out.append((str(p), st.st_mode, st.st_nlink, data))
        out.append(("xattrs", 0, 0, repr(os.listxattr(canary)).encode()))
        return out

    snap = snapshot()

    def check() -> None:
        assert sorted(os.listdir(tmp_path)) == sorted({*before, "dest"})
        assert snapshot() == snap
        assert sorted(os.listdir("/etc")) == etc_before

    yield dest, canary, check
    Path("/etc/pipeline-canary-x").unlink(missing_ok=True)  # only if a regression wrote it


@pytest.mark.parametrize(
    ("members", "match"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_hostile_tar_refused(
    sandbox: tuple[Path, Path, Callable[[], None]], members: list[M], match: str
) -> None:
    dest, canary, check = sandbox
    data = hostile_tar(members, canary)
    with pytest.raises(UnsafePathError, match=f"^evil.tar: refused path .*{match}"):
        extract_layer(io.BytesIO(data), dest, "evil.tar")
    check()


def test_hostile_tar_handled(sandbox: tuple[Path, Path, Callable[[], None]]) -> None:
    """Entries that are legal but aim at something outside: done inside dest only."""
    dest, canary, check = sandbox
    members = [
        M("dev", "dir"),
        M("dev/null", "chr"),
        M("dev/loop0", "blk"),
        M("fifo", "fifo"),
        M("l", "symlink", "CANARY/secret"),
        M("hl", "hardlink", "l"),  # a hardlink to the symlink itself, never followed
        M("replaced", "symlink", "CANARY/secret"),
        M("replaced", data=b"a file replaces the symlink, nothing written through it"),
        M("dirover", "symlink", "CANARY"),
        M("dirover", "dir"),
        M("./dot/./x"),
        M(".wh..wh.plnk", "dir"),
    ]
    report = extract_layer(io.BytesIO(hostile_tar(members, canary)), dest, "evil.tar")
    assert isinstance(report, ExtractReport)
    assert report.skipped == ("dev/null", "dev/loop0", ".wh..wh.plnk")
    assert any("device" in n for n in report.notes)
    assert not (dest / "dev/null").exists() and (dest / "dev").is_dir()
    assert os.readlink(dest / "hl") == str(canary / "secret")
    assert (dest / "replaced").read_bytes().startswith(b"a file")
    assert (dest / "dirover").is_dir() and not (dest / "dirover").is_symlink()
    assert (dest / "dot/x").is_file()
    assert stat.S_ISFIFO((dest / "fifo").lstat().st_mode)
    check()


def test_whiteout_semantics_within_one_layer(tmp_path: Path) -> None:
    """A whiteout and an entry of the same name in one layer keep the entry; a
    directory that replaced a whiteout is opaque (the lower one was deleted)."""
    members = [
        M(".wh.a"),
        M("a", "dir"),
        M("a/x"),
        M("b", "dir"),
        M(".wh.b"),
        M("c"),
        M(".wh.c"),
        M(".wh.gone"),
        M("under/.wh..wh..opq"),
        M(".wh.p"),
        M("p/q"),  # implicit parent over a whiteout
    ]
    dest = tmp_path / "dest"
    extract_layer(io.BytesIO(hostile_tar(members, tmp_path)), dest, "l.tar")
    assert os.getxattr(dest / "a", OPAQUE_XATTR) == b"y"
    assert os.getxattr(dest / "b", OPAQUE_XATTR) == b"y"
    assert (dest / "c").read_bytes() == b"pwned"
    assert is_whiteout(dest / "gone")
    assert os.getxattr(dest / "under", OPAQUE_XATTR) == b"y"
    assert os.getxattr(dest / "p", OPAQUE_XATTR) == b"y" and (dest / "p/q").is_file()
    # and it writes back as OCI whiteouts
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(dest)[0])) as tf:
        names = tf.getnames()
    assert ".wh.gone" in names and "a/.wh..wh..opq" in names and ".wh.a" not in names


def test_extract_keeps_metadata_from_foreign_tar(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("./bin/")
        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1234
        tf.addfile(ti)
        ti = tarfile.TarInfo("./bin/ping")
        ti.mode, ti.uid, ti.gid, ti.mtime, ti.size = 0o4711, 7, 8, 5678, 4
        ti.uname, ti.gname = "nobody-by-name", "ignored"
        ti.pax_headers = {
            "SCHILY.xattr.security.capability": CAP_NET_BIND.decode("utf-8", "surrogateescape"),
            "SCHILY.xattr.trusted.overlay.redirect": "/etc",
        }
        tf.addfile(ti, io.BytesIO(b"ping"))
    dest = tmp_path / "d"
    report = extract_layer(io.BytesIO(out.getvalue()), dest, "f.tar")
    st = (dest / "bin/ping").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime) == (7, 8, 0o4711, 5678)
    assert (dest / "bin").stat().st_mtime == 1234
    assert os.getxattr(dest / "bin/ping", "security.capability") == CAP_NET_BIND
    assert "trusted.overlay.redirect" not in os.listxattr(dest / "bin/ping")
    assert any("trusted.overlay.redirect" in n for n in report.notes)


# -- property: whatever the member sequence, nothing lands outside dest ----------------

_NAMES = st.sampled_from(["a", "b", "a/b", "a/b/c", "l", "l/x", "../x", "a/../../x", "/abs", "."])
_TARGETS = st.sampled_from(["a", "a/b", "l", "..", "../..", "CANARY", "CANARY/secret", "/etc"])
_MEMBERS = st.lists(
    st.builds(
        M,
        name=_NAMES | _NAMES.map(lambda n: n.rsplit("/", 1)[0] + "/.wh." + n.rsplit("/", 1)[-1]),
        kind=st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo", "chr"]),
        target=_TARGETS,
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(members=_MEMBERS)
def test_no_member_sequence_escapes(members: list[M]) -> None:
    with tempfile.TemporaryDirectory(prefix="tarball-prop-") as tmp:
        base = Path(tmp)
        canary = base / "canary"
        canary.mkdir()
        (canary / "secret").write_text("untouched")
        dest = base / "dest"
        with contextlib.suppress(UnsafePathError, StoreError):
            extract_layer(io.BytesIO(hostile_tar(members, canary)), dest, "p.tar")
        assert sorted(os.listdir(base)) == ["canary", "dest"]
        assert os.listdir(canary) == ["secret"]
        assert (canary / "secret").read_text() == "untouched"
        assert (canary / "secret").stat().st_nlink == 1
        assert not Path("/etc/.wh.x").exists() and not Path("/etc/x").exists()
        assert not Path("/abs").exists()
