"""Importing base images in every accepted format, built with real tools (skopeo), and
refusing corrupted or hostile ones without leaving anything in staging. Also the
busybox base rootfs the fixtures are made from."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.build import bases
from pipeline.errors import PipelineError, StoreError, UnsafePathError
from pipeline.fs.importer import ImportedImage, read_image
from pipeline.fs.tarformat import OPAQUE_XATTR
from pipeline.fs.tarwrite import layer_info, write_layer
from pipeline.oci.config import DEFAULT_PATH

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha_file(path: Path) -> str:
    with path.open("rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


class Layout:
    """An OCI image layout written by hand (JSON in the test, layer tars by us)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs/sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.index: list[dict[str, Any]] = []

    def blob(self, data: bytes) -> dict[str, Any]:
        (self.root / "blobs/sha256" / sha(data)[7:]).write_bytes(data)
        return {"digest": sha(data), "size": len(data)}

    def image(
        self,
        layers: list[bytes],
        ref: str | None = None,
        gzip_layers: bool = False,
        diff_ids: list[str] | None = None,
        arch: str = "amd64",
    ) -> dict[str, Any]:
        """Add an image; returns its manifest descriptor (not yet in the index)."""
        config = {
            "architecture": arch,
            "os": "linux",
            "config": {"Env": ["PATH=/bin", "HELLO=world"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids or [sha(d) for d in layers]},
            "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
        }
        blobs = [gzip.compress(d, mtime=0) if gzip_layers else d for d in layers]
        suffix = "+gzip" if gzip_layers else ""
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                **self.blob(json.dumps(config).encode()),
            },
            "layers": [
                {"mediaType": f"application/vnd.oci.image.layer.v1.tar{suffix}", **self.blob(b)}
                for b in blobs
            ],
        }
        desc: dict[str, Any] = {
            "mediaType": MT_MANIFEST,
            **self.blob(json.dumps(manifest).encode()),
        }
        if ref is not None:
            desc["annotations"] = {"org.opencontainers.image.ref.name": ref}
        return desc

    def write_index(self, manifests: list[dict[str, Any]]) -> None:
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
        (self.root / "index.json").write_text(json.dumps(index))


def tar_of(root: Path) -> bytes:
    buf = io.BytesIO()
    write_layer(root, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def upper_tar(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A second layer: deletes /etc/group, makes /tmp opaque, adds /app/hello."""
    root = tmp_path_factory.mktemp("upper") / "layer"
    (root / "etc").mkdir(parents=True)
    os.mknod(root / "etc/group", stat.S_IFCHR, os.makedev(0, 0))
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    os.setxattr(root / "tmp", OPAQUE_XATTR, b"y")
    (root / "app").mkdir()
    (root / "app/hello").write_text("hello\n")
    return tar_of(root)


@pytest.fixture(scope="module")
def formats(
    tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path, upper_tar: bytes
) -> dict[str, Path]:
    """The same two-layer image as: layout, oci-archive, docker-archive (+ gzip), and
    the busybox rootfs as a plain and a gzip tarball."""
    base = tmp_path_factory.mktemp("formats")
    layout = Layout(base / "layout")
    layout.write_index(
        [layout.image([busybox_tar.read_bytes(), upper_tar], ref="latest", gzip_layers=True)]
    )
    out = {"layout": layout.root}
    out["oci-archive"] = base / "image.oci.tar"
    out["docker-archive"] = base / "image.docker.tar"
    for name, target in (
        ("oci-archive", f"oci-archive:{out['oci-archive']}"),
        ("docker-archive", f"docker-archive:{out['docker-archive']}:busybox:latest"),
    ):
        subprocess.run(
            ["skopeo", "copy", "-q", f"oci:{layout.root}:latest", target],
            check=True,
            capture_output=True,
        )
        assert out[name].is_file()
    out["docker-archive-gz"] = base / "image.docker.tar.gz"
    out["docker-archive-gz"].write_bytes(gzip.compress(out["docker-archive"].read_bytes()))
    out["rootfs"] = busybox_tar
    out["rootfs-gz"] = base / "rootfs.tar.gz"
    out["rootfs-gz"].write_bytes(gzip.compress(busybox_tar.read_bytes()))
    return out


def expected_source_digest(kind: str, path: Path) -> str:
    if kind == "layout":
        index = json.loads((path / "index.json").read_text())
        return index["manifests"][0]["digest"]
    if kind == "oci-archive":
        with tarfile.open(path) as tf:
            index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
        return index["manifests"][0]["digest"]
    if kind.startswith("docker-archive"):
        with tarfile.open(path) as tf:
            manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
            config = tf.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
        return sha(config)
    return sha_file(path)


def assert_busybox_layer(layer: Path) -> None:
    assert (layer / "bin/busybox").stat().st_size > 100_000
    assert os.readlink(layer / "bin/sh") == "/bin/busybox"
    assert "app:x:1000:1000" in (layer / "etc/passwd").read_text()
    assert stat.S_IMODE((layer / "tmp").stat().st_mode) == 0o1777


@pytest.mark.parametrize(
    "kind",
    ["layout", "oci-archive", "docker-archive", "docker-archive-gz", "rootfs", "rootfs-gz"],
)
def test_read_every_format(
    kind: str, formats: dict[str, Path], busybox_tar: Path, upper_tar: bytes, tmp_path: Path
) -> None:
    path = formats[kind]
    staging = tmp_path / "staging"
    image = read_image(path, staging)
    assert isinstance(image, ImportedImage)
    assert image.source_digest == expected_source_digest(kind, path)
    assert all(d.parent == staging for d in image.layer_dirs)
    assert sorted(os.listdir(staging)) == sorted(d.name for d in image.layer_dirs)
    assert_busybox_layer(image.layer_dirs[0])
    # our layer tars round-trip: re-tarring the imported dirs gives the source diff_ids
    source = [sha(busybox_tar.read_bytes())]
    if kind.startswith("rootfs"):
        assert image.config["config"]["Env"] == [f"PATH={DEFAULT_PATH}"]
        assert (image.config["architecture"], image.config["os"]) == ("amd64", "linux")
    else:
        source.append(sha(upper_tar))
        assert "HELLO=world" in image.config["config"]["Env"]
        upper = image.layer_dirs[1]
        group = (upper / "etc/group").lstat()
        assert stat.S_ISCHR(group.st_mode) and group.st_rdev == 0
        assert os.getxattr(upper / "tmp", OPAQUE_XATTR) == b"y"
        assert (upper / "app/hello").read_text() == "hello\n"
    assert image.config["rootfs"]["diff_ids"] == source
    assert [layer_info(d).diff_id for d in image.layer_dirs] == source
    assert image.notes == ()


def test_ref_and_platform_selection(tmp_path: Path, busybox_tar: Path, upper_tar: bytes) -> None:
    layout = Layout(tmp_path / "multi")
    a = layout.image([busybox_tar.read_bytes()], ref="a")
    b = layout.image([busybox_tar.read_bytes(), upper_tar], ref="b")
    layout.write_index([a, b])
    with pytest.raises(StoreError, match=r"index.json: 2 images; name one \(has: a, b\)"):
        read_image(layout.root, tmp_path / "s1")
    assert len(read_image(layout.root, tmp_path / "s2", ref="b").layer_dirs) == 2
    assert len(read_image(layout.root, tmp_path / "s3", ref="repo:a").layer_dirs) == 1
    with pytest.raises(StoreError, match="no image named 'c'"):
        read_image(layout.root, tmp_path / "s4", ref="c")

    plat = Layout(tmp_path / "plat")
    arm = plat.image([upper_tar], arch="arm64")
    amd = plat.image([busybox_tar.read_bytes(), upper_tar], arch="amd64")
    arm["platform"] = {"os": "linux", "architecture": "arm64"}
    amd["platform"] = {"os": "linux", "architecture": "amd64"}
    nested = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [arm, amd]}
    plat.write_index([{"mediaType": MT_INDEX, **plat.blob(json.dumps(nested).encode())}])
    image = read_image(plat.root, tmp_path / "s5", arch="amd64")
    assert image.source_digest == amd["digest"] and len(image.layer_dirs) == 2
    assert len(read_image(plat.root, tmp_path / "s6", arch="arm64").layer_dirs) == 1
    with pytest.raises(StoreError, match=r"no linux/s390x image \(has: linux/arm64, linux/amd64\)"):
        read_image(plat.root, tmp_path / "s7", arch="s390x")


def test_docker_archive_pick_by_tag(formats: dict[str, Path], tmp_path: Path) -> None:
    image = read_image(formats["docker-archive"], tmp_path / "s", ref="busybox:latest")
    assert len(image.layer_dirs) == 2
    with pytest.raises(StoreError, match="no image tagged 'other:1'"):
        read_image(formats["docker-archive"], tmp_path / "s2", ref="other:1")


# -- corruption: StoreError naming the file and both digests, nothing left behind ------


def test_corrupted_layer_blob(tmp_path: Path, busybox_tar: Path, upper_tar: bytes) -> None:
    layout = Layout(tmp_path / "layout")
    desc = layout.image([busybox_tar.read_bytes(), upper_tar])
    layout.write_index([desc])
    blob = layout.root / "blobs/sha256" / sha(upper_tar)[7:]
    data = bytearray(blob.read_bytes())
    data[data.index(b"hello\n")] ^= 0x20  # same size, still a valid tar
    blob.write_bytes(bytes(data))
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "unrelated").write_text("kept")
    with pytest.raises(StoreError) as info:
        read_image(layout.root, staging)
    message = str(info.value)
    assert message.startswith(f"{blob}: digest mismatch")
    assert sha(upper_tar) in message and sha(bytes(data)) in message
    assert os.listdir(staging) == ["unrelated"]  # the good first layer was removed too


def test_config_diff_id_mismatch(tmp_path: Path, busybox_tar: Path) -> None:
    layout = Layout(tmp_path / "layout")
    wrong = sha(b"something else")
    layout.write_index(
        [layout.image([busybox_tar.read_bytes()], diff_ids=[wrong], gzip_layers=True)]
    )
    staging = tmp_path / "staging"
    with pytest.raises(StoreError, match="diff_id") as info:
        read_image(layout.root, staging)
    assert wrong in str(info.value) and sha(busybox_tar.read_bytes()) in str(info.value)
    assert os.listdir(staging) == []


def test_corrupted_manifest_and_gzip(tmp_path: Path, busybox_tar: Path) -> None:
    layout = Layout(tmp_path / "layout")
    desc = layout.image([busybox_tar.read_bytes()], gzip_layers=True)
    layout.write_index([desc])
    manifest = layout.root / "blobs/sha256" / desc["digest"][7:]
    layer_digest = json.loads(manifest.read_text())["layers"][0]["digest"]
    gz = layout.root / "blobs/sha256" / layer_digest[7:]
    data = bytearray(gz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    gz.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"^{gz}: "):
        read_image(layout.root, tmp_path / "s1")
    assert os.listdir(tmp_path / "s1") == []
    manifest.write_text(manifest.read_text().replace('"schemaVersion": 2', '"schemaVersion":2'))
    with pytest.raises(
        StoreError, match=f"^{manifest}: digest mismatch: expected {desc['digest']}"
    ):
        read_image(layout.root, tmp_path / "s2")


def test_corrupted_docker_archive_dir(formats: dict[str, Path], tmp_path: Path) -> None:
    unpacked = tmp_path / "docker"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", str(formats["docker-archive"]), "-C", str(unpacked)], check=True)
    assert len(read_image(unpacked, tmp_path / "ok").layer_dirs) == 2  # the dir form works
    manifest = json.loads((unpacked / "manifest.json").read_text())
    layer = unpacked / manifest[0]["Layers"][1]
    data = bytearray(layer.read_bytes())
    data[data.index(b"hello\n")] ^= 0x20
    layer.chmod(0o644)
    layer.write_bytes(bytes(data))
    staging = tmp_path / "staging"
    with pytest.raises(StoreError, match=f"^{layer}: .*mismatch") as info:
        read_image(unpacked, staging)
    assert sha(bytes(data)) in str(info.value)
    assert os.listdir(staging) == []


# -- hostile layouts and archives -------------------------------------------------------


@pytest.mark.parametrize(
    ("digest", "error", "match"),
    [
        ("sha256:../../../../etc/passwd", UnsafePathError, "not a sha256 digest"),
        ("sha256:" + "a" * 60 + "/../x", UnsafePathError, "not a sha256 digest"),
        ("../../etc/passwd", UnsafePathError, "not a sha256 digest"),
        ("sha512:" + "a" * 128, StoreError, "malformed digest"),
        ("sha256:" + "A" * 64, StoreError, "malformed digest"),
    ],
)
def test_blob_path_traversal_in_index_refused(
    tmp_path: Path, digest: str, error: type[Exception], match: str
) -> None:
    layout = Layout(tmp_path / "layout")
    layout.write_index([{"mediaType": MT_MANIFEST, "digest": digest, "size": 10}])
    staging = tmp_path / "staging"
    with pytest.raises(error, match=match) as info:
        read_image(layout.root, staging)
    assert str(info.value).startswith(str(layout.root / "index.json"))
    assert os.listdir(staging) == []


def test_layer_path_traversal_in_docker_manifest_refused(
    formats: dict[str, Path], tmp_path: Path
) -> None:
    unpacked = tmp_path / "docker"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", str(formats["docker-archive"]), "-C", str(unpacked)], check=True)
    manifest = json.loads((unpacked / "manifest.json").read_text())
    for bad, match in (("../../etc/passwd", "'..'"), ("/etc/passwd", "relative")):
        manifest[0]["Layers"][0] = bad
        (unpacked / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(UnsafePathError, match=match):
            read_image(unpacked, tmp_path / "staging")
    (unpacked / "escape").symlink_to("/etc")
    manifest[0]["Layers"][0] = "escape/passwd"
    (unpacked / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnsafePathError, match="outside"):
        read_image(unpacked, tmp_path / "staging")
    assert os.listdir(tmp_path / "staging") == []


def test_hostile_rootfs_refused_and_cleaned(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        link = tarfile.TarInfo("etc")
        link.type, link.linkname = tarfile.SYMTYPE, str(tmp_path / "canary")
        tf.addfile(link)
        payload = tarfile.TarInfo("etc/passwd")
        payload.size = 5
        tf.addfile(payload, io.BytesIO(b"pwned"))
    (tmp_path / "canary").mkdir()
    staging = tmp_path / "staging"
    with pytest.raises(UnsafePathError, match=f"^{evil}: refused path 'etc/passwd'.*symlink"):
        read_image(evil, staging)
    assert os.listdir(staging) == [] and os.listdir(tmp_path / "canary") == []


def test_rootfs_with_device_nodes_imports_with_notes(tmp_path: Path) -> None:
    """Like a real Debian rootfs tarball: ./dev/null etc. are skipped, not created."""
    rootfs = tmp_path / "debian-like.tar.xz"
    with tarfile.open(rootfs, "w:xz") as tf:
        for name, kind in (("./", tarfile.DIRTYPE), ("./dev/", tarfile.DIRTYPE)):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode = kind, 0o755
            tf.addfile(ti)
        for name, major, minor in (("./dev/null", 1, 3), ("./dev/zero", 1, 5), ("./dev/tty", 5, 0)):
            ti = tarfile.TarInfo(name)
            ti.type, ti.devmajor, ti.devminor, ti.mode = tarfile.CHRTYPE, major, minor, 0o666
            tf.addfile(ti)
        ti = tarfile.TarInfo("./etc/debian_version")
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"12.5\n"))
    image = read_image(rootfs, tmp_path / "staging")
    layer = image.layer_dirs[0]
    assert sorted(os.listdir(layer)) == ["dev", "etc"] and os.listdir(layer / "dev") == []
    assert image.notes and "3 device node(s)" in image.notes[0] and "dev/null" in image.notes[0]
    assert image.source_digest == sha_file(rootfs)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x28\xb5\x2f\xfd" + bytes(64), "zstandard"),
        (b"definitely not an image\n" * 40, "not a valid tar"),
        (b"", "not a valid tar"),
    ],
)
def test_not_an_image(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=f"^{path}: .*{match}"):
        read_image(path, tmp_path / "staging")
    assert os.listdir(tmp_path / "staging") == []


def test_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such file"):
        read_image(tmp_path / "nope", tmp_path / "staging")
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(StoreError, match="neither an OCI layout"):
        read_image(tmp_path / "empty-dir", tmp_path / "staging")
    layout = Layout(tmp_path / "layout")
    layout.write_index([{"mediaType": MT_MANIFEST, "digest": sha(b"absent"), "size": 6}])
    with pytest.raises(StoreError, match=r"blobs/sha256/[0-9a-f]{64}: missing"):
        read_image(layout.root, tmp_path / "staging")


# -- the busybox base ---------------------------------------------------------------------


def test_busybox_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    bases.make_busybox_rootfs(root)
    applets = subprocess.run(
        ["/bin/busybox", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    links = {p.name for p in root.rglob("*") if p.is_symlink()}
    assert set(applets) - {"busybox", "linuxrc"} <= links
    assert os.readlink(root / "bin/sh") == "/bin/busybox"
    assert (root / "usr/bin/env").is_symlink()
    passwd = (root / "etc/passwd").read_text()
    assert passwd.startswith("root:x:0:0:") and "\napp:x:1000:1000:" in passwd
    assert "nobody:x:65534" in passwd and "app:x:1000:" in (root / "etc/group").read_text()
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((root / "root").stat().st_mode) == 0o700
    assert not (root / "etc/hostname").exists()
    # it is a real, working base: its shell runs in a chroot
    proc = subprocess.run(
        [
            shutil.which("chroot") or "/usr/sbin/chroot",
            str(root),
            "/bin/sh",
            "-c",
            "echo hi from $(id -un) in $(pwd); ls /etc",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/bin:/usr/bin"},
    )
    assert proc.stdout.splitlines()[0] == "hi from root in /"
    assert proc.stdout.split()[-2:] == ["group", "passwd"]


def test_busybox_tar_is_deterministic(tmp_path: Path, busybox_tar: Path) -> None:
    out = tmp_path / "again.tar"
    bases.busybox_rootfs_tar(out)
    assert out.read_bytes() == busybox_tar.read_bytes()
    assert os.listdir(tmp_path) == ["again.tar"]  # no temp leftovers


@pytest.mark.parametrize(
    ("binary", "match"),
    [
        (lambda tmp: tmp / "missing", "not found; install the busybox-static package"),
        (lambda tmp: Path(shutil.which("ls") or "/bin/ls"), "dynamically linked; install"),
        (lambda tmp: Path("/etc/passwd"), "not a 64-bit ELF"),
    ],
)
def test_busybox_missing_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Callable[[Path], Path], match: str
) -> None:
    monkeypatch.setattr(bases, "BUSYBOX", binary(tmp_path))
    with pytest.raises(PipelineError, match=match):
        bases.busybox_rootfs_tar(tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()


def test_layout_made_by_umoci(tmp_path: Path, busybox_tar: Path) -> None:
    """A layout another tool wrote (its own JSON, its own gzip of our layer)."""
    layout = tmp_path / "umoci"
    for argv in (
        ["umoci", "init", "--layout", str(layout)],
        ["umoci", "new", "--image", f"{layout}:t"],
        ["umoci", "raw", "add-layer", "--image", f"{layout}:t", str(busybox_tar)],
    ):
        subprocess.run(argv, check=True, capture_output=True)
    image = read_image(layout, tmp_path / "staging", ref="t")
    index = json.loads((layout / "index.json").read_text())
    assert image.source_digest == index["manifests"][0]["digest"]
    assert image.config["rootfs"]["diff_ids"] == [sha(busybox_tar.read_bytes())]
    assert_busybox_layer(image.layer_dirs[0])
    assert layer_info(image.layer_dirs[0]).diff_id == sha(busybox_tar.read_bytes())


def test_single_unnamed_image_matches_any_ref(formats: dict[str, Path], tmp_path: Path) -> None:
    """skopeo's oci-archive carries no ref annotation: asking for a name still finds it."""
    image = read_image(formats["oci-archive"], tmp_path / "s", ref="busybox:latest")
    assert len(image.layer_dirs) == 2
