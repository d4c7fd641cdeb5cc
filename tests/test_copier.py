"""COPY into a fresh layer dir: Docker semantics, ownership, metadata, hostile paths.

Real files; root is needed for chown, whiteouts and trusted.* xattrs (CI is root)."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from pipeline.errors import UnsafePathError
from pipeline.fs.context import select
from pipeline.fs.copier import (
    CopyError,
    SourceNode,
    SourceTree,
    copy_step,
    entry_trees,
    image_trees,
    run_copy,
)
from pipeline.fs.layerstack import OPAQUE_XATTR, LayerStack
from pipeline.model import Copy

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown and whiteouts need root")

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nwww:x:33:33::/:/\n"
GROUP = "root:x:0:\nstaff:x:50:app\napp:x:1000:\n"
OPT_MTIME = 1_600_000_000_000_000_000


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    write(ctx / "a.txt", "A")
    write(ctx / "b.txt", "B")
    write(ctx / "run.sh", "#!/bin/sh\n", 0o755)
    write(ctx / "src" / "main.py", "print()")
    write(ctx / "src" / "pkg" / "mod.py", "x = 1", 0o600)
    (ctx / "src").chmod(0o750)
    (ctx / "src" / "link").symlink_to("../a.txt")
    (ctx / "src" / "abs").symlink_to("/etc/passwd")
    (ctx / "empty").mkdir()
    return ctx


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A host directory the copier must never touch."""
    d = tmp_path / "canary"
    write(d / "keep.txt", "untouched")
    return d


@pytest.fixture
def stack(tmp_path: Path, canary: Path) -> LayerStack:
    base = tmp_path / "base"
    write(base / "etc" / "passwd", PASSWD)
    write(base / "etc" / "group", GROUP)
    (base / "opt").mkdir()
    (base / "opt").chmod(0o750)
    os.chown(base / "opt", 7, 8)
    os.setxattr(base / "opt", OPAQUE_XATTR, b"y")  # must not leak into the new layer
    os.utime(base / "opt", ns=(OPT_MTIME, OPT_MTIME))
    (base / "srv" / "app").mkdir(parents=True)
    write(base / "data", "a file")
    (base / "www").symlink_to("/srv/app")
    (base / "rel").symlink_to("srv/app")
    (base / "evil-abs").symlink_to(canary)  # a host path: only means /tmp/... in the image
    (base / "evil-up").symlink_to("../" * 20 + str(canary).lstrip("/"))
    (base / "evil-etc").symlink_to("/../../etc")
    (base / "evil-etc2").symlink_to("/etc")
    return LayerStack([base])


def listing(root: Path) -> list[str]:
    """Every path below ``root``, dirs with a trailing "/", symlinks as "x -> target"."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out.append(f"{rel} -> {os.readlink(p)}")
            elif p.is_dir():
                out.append(rel + "/")
            else:
                out.append(rel)
    return sorted(out)


def do_copy(
    context: Path,
    stack: LayerStack,
    layer: Path,
    sources: list[str],
    dest: str,
    workdir: str = "/",
    **kw: str,
) -> list[str]:
    layer.mkdir()
    trees = entry_trees(select(context, sources, ()))
    copy_step(trees, dest, layer, stack, workdir=workdir, source_count=len(sources), **kw)
    return listing(layer)


SRC_CONTENTS = ["abs -> /etc/passwd", "link -> ../a.txt", "main.py", "pkg/", "pkg/mod.py"]

CASES = [
    # (id, sources, dest, workdir, expected layer listing)
    ("file-into-dir-slash", ["a.txt"], "/dst/", "/", ["dst/", "dst/a.txt"]),
    ("file-to-new-name", ["a.txt"], "/dst/b.txt", "/", ["dst/", "dst/b.txt"]),
    ("file-into-existing-dir", ["a.txt"], "/srv/app", "/", ["srv/", "srv/app/", "srv/app/a.txt"]),
    ("file-over-image-file", ["a.txt"], "/data", "/", ["data"]),
    ("file-into-root", ["a.txt"], "/", "/", ["a.txt"]),
    ("dir-copies-contents", ["src"], "/dst", "/", ["dst/", *[f"dst/{p}" for p in SRC_CONTENTS]]),
    ("dir-with-slash", ["src/"], "/dst/", "/", ["dst/", *[f"dst/{p}" for p in SRC_CONTENTS]]),
    ("dir-into-root", ["src"], "/", "/", SRC_CONTENTS),
    (
        "several-sources",
        ["a.txt", "src", "run.sh"],
        "/dst/",
        "/",
        sorted(["dst/", "dst/a.txt", "dst/run.sh", *[f"dst/{p}" for p in SRC_CONTENTS]]),
    ),
    ("wildcard", ["*.txt"], "/dst/", "/", ["dst/", "dst/a.txt", "dst/b.txt"]),
    ("wildcard-one-match", ["a.*"], "/dst/x", "/", ["dst/", "dst/x"]),
    ("relative-dot", ["a.txt"], ".", "/work", ["work/", "work/a.txt"]),
    ("relative-name", ["a.txt"], "sub/b.txt", "/work", ["work/", "work/sub/", "work/sub/b.txt"]),
    (
        "relative-dir",
        ["src"],
        "code",
        "/work",
        ["work/", "work/code/"] + [f"work/code/{p}" for p in SRC_CONTENTS],
    ),
    ("empty-dir-makes-dest", ["empty"], "/e", "/", ["e/"]),
    ("through-image-abs-link", ["a.txt"], "/www/", "/", ["srv/", "srv/app/", "srv/app/a.txt"]),
    ("through-image-rel-link", ["a.txt"], "/rel/x", "/", ["srv/", "srv/app/", "srv/app/x"]),
    ("dir-through-image-link", ["src/pkg"], "/www", "/", ["srv/", "srv/app/", "srv/app/mod.py"]),
    ("dotdot-dest-stays-in-root", ["a.txt"], "../../../x", "/w", ["x"]),
]


@pytest.mark.parametrize(
    ("sources", "dest", "workdir", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_docker_copy_semantics(
    tmp_path: Path,
    context: Path,
    stack: LayerStack,
    sources: list[str],
    dest: str,
    workdir: str,
    expected: list[str],
) -> None:
    assert do_copy(context, stack, tmp_path / "layer", sources, dest, workdir) == expected


ERRORS = [
    ("several-sources-need-dir", ["a.txt", "b.txt"], "/dst", CopyError, "several sources"),
    ("wildcard-many-need-dir", ["*.txt"], "/dst", CopyError, "several sources"),
    ("dir-onto-image-file", ["src"], "/data", CopyError, r"^/data: not a directory in the image"),
    ("file-under-image-file", ["a.txt"], "/data/x", CopyError, r"^/data: not a directory"),
    ("file-and-empty-dir-need-dir", ["a.txt", "empty"], "/dst", CopyError, "several sources"),
    ("whiteout-name-dest", ["a.txt"], "/.wh.x", UnsafePathError, "reserved for whiteouts"),
]


@pytest.mark.parametrize(
    ("sources", "dest", "exc", "match"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_copy_errors(
    tmp_path: Path,
    context: Path,
    stack: LayerStack,
    sources: list[str],
    dest: str,
    exc: type[Exception],
    match: str,
) -> None:
    with pytest.raises(exc, match=match):
        do_copy(context, stack, tmp_path / "layer", sources, dest)


def meta(path: Path) -> tuple[str, int, int]:
    st = os.lstat(path)
    return oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid


def test_modes_kept_and_owner_root(tmp_path: Path, context: Path, stack: LayerStack) -> None:
    for name in ("a.txt", "run.sh", "src/pkg/mod.py"):
        os.chown(context / name, 1234, 1234)
    layer = tmp_path / "layer"
    do_copy(context, stack, layer, ["a.txt", "run.sh", "src"], "/d/")
    assert meta(layer / "d" / "a.txt") == ("0o644", 0, 0)
    assert meta(layer / "d" / "run.sh") == ("0o755", 0, 0)
    assert meta(layer / "d" / "pkg" / "mod.py") == ("0o600", 0, 0)
    assert (layer / "d" / "run.sh").read_text() == "#!/bin/sh\n"
    assert os.lstat(layer / "d" / "a.txt").st_mtime_ns == os.lstat(context / "a.txt").st_mtime_ns


@pytest.mark.parametrize(
    ("chown", "uid", "gid"),
    [("app", 1000, 1000), ("app:staff", 1000, 50), ("www:0", 33, 0), ("33:50", 33, 50),
     ("1000", 1000, 1000), ("4321", 4321, 4321), ("4321:0", 4321, 0)],
)  # fmt: skip
def test_chown_by_name_and_number(
    tmp_path: Path, context: Path, stack: LayerStack, chown: str, uid: int, gid: int
) -> None:
    layer = tmp_path / "layer"
    do_copy(context, stack, layer, ["src"], "/new/code", chown=chown)
    for rel in ("new/code", "new/code/main.py", "new/code/pkg", "new/code/link", "new/code/abs"):
        st = os.lstat(layer / rel)
        assert (st.st_uid, st.st_gid) == (uid, gid), rel
    assert meta(layer / "new") == ("0o755", uid, gid)  # a created parent too (BuildKit)


def test_chown_resolves_through_image_not_host(tmp_path: Path, context: Path) -> None:
    lower = tmp_path / "lower"
    write(lower / "etc" / "passwd", PASSWD)
    upper = tmp_path / "upper"
    write(upper / "etc" / "passwd", "root:x:0:0::/:/\nbob:x:77:78::/:/\n")
    layer = tmp_path / "layer"
    do_copy(context, LayerStack([upper, lower]), layer, ["a.txt"], "/a", chown="bob")
    assert meta(layer / "a")[1:] == (77, 78)


@pytest.mark.parametrize(
    ("chown", "match"),
    [("nobody", "unknown user 'nobody'"), ("app:wheel", "unknown group 'wheel'")],
)
def test_chown_unknown_name_is_clear_error(
    tmp_path: Path, context: Path, stack: LayerStack, chown: str, match: str
) -> None:
    with pytest.raises(CopyError, match=rf"^/d: chown '{chown}': {match}"):
        do_copy(context, stack, tmp_path / "layer", ["src"], "/d", chown=chown)


@pytest.mark.parametrize(
    ("chmod", "bits"), [("0700", "0o700"), ("640", "0o640"), ("4755", "0o4755")]
)
def test_chmod_overrides_files_and_dirs(
    tmp_path: Path, context: Path, stack: LayerStack, chmod: str, bits: str
) -> None:
    layer = tmp_path / "layer"
    do_copy(context, stack, layer, ["src"], "/d", chown="app", chmod=chmod)
    for rel in ("d/main.py", "d/pkg", "d/pkg/mod.py"):
        assert meta(layer / rel) == (bits, 1000, 1000), rel
    assert meta(layer / "d") == ("0o755", 1000, 1000)  # made for the COPY, not copied
    assert stat.S_ISLNK(os.lstat(layer / "d" / "link").st_mode)


@pytest.mark.parametrize("chmod", ["rwx", "999", "07777x", "12"])
def test_bad_chmod(tmp_path: Path, context: Path, stack: LayerStack, chmod: str) -> None:
    with pytest.raises(CopyError, match=r"^/d: chmod .*not an octal mode"):
        do_copy(context, stack, tmp_path / "layer", ["a.txt"], "/d", chmod=chmod)


def test_parent_dirs_take_metadata_from_stack(
    tmp_path: Path, context: Path, stack: LayerStack
) -> None:
    layer = tmp_path / "layer"
    written = do_copy(context, stack, layer, ["a.txt"], "/opt/sub/x")
    assert written == ["opt/", "opt/sub/", "opt/sub/x"]
    assert meta(layer / "opt") == ("0o750", 7, 8)
    assert os.lstat(layer / "opt").st_mtime_ns == OPT_MTIME
    with pytest.raises(OSError):
        os.getxattr(layer / "opt", OPAQUE_XATTR)  # an opaque parent would hide the image's /opt
    assert meta(layer / "opt" / "sub") == ("0o755", 0, 0)


def test_existing_dest_dir_keeps_image_metadata(
    tmp_path: Path, context: Path, stack: LayerStack
) -> None:
    layer = tmp_path / "layer"
    do_copy(context, stack, layer, ["src"], "/opt", chown="app", chmod="0700")
    assert meta(layer / "opt") == ("0o750", 7, 8)
    assert meta(layer / "opt" / "pkg") == ("0o700", 1000, 1000)


def test_new_dest_dir_metadata(tmp_path: Path, context: Path, stack: LayerStack) -> None:
    layer = tmp_path / "layer"
    do_copy(context, stack, layer, ["src"], "/new/code")
    assert meta(layer / "new" / "code") == ("0o755", 0, 0)  # select reports no dir itself
    # A tree with a root node (COPY --from of a 0750 dir) does not give its metadata to
    # a new dest dir: BuildKit makes it 0755 root:root.
    layer2 = tmp_path / "layer2"
    layer2.mkdir()
    copy_step(image_trees(LayerStack([context]), ["/src"]), "/new/code", layer2, stack)
    assert meta(layer2 / "new" / "code") == ("0o755", 0, 0)


@pytest.mark.parametrize(
    ("several", "dest"),
    [
        (True, "/evil-abs/"),
        (True, "/evil-abs/sub/"),
        (True, "/evil-up/"),
        (True, "/evil-etc/"),
        (True, "/evil-etc2/deeper/"),
        (False, "/evil-abs/{name}"),
        (False, "/evil-up/{name}"),
        (False, "/evil-etc/{name}"),
        (False, "/evil-etc2/{name}"),
    ],
)
def test_image_symlinks_never_reach_the_host(
    tmp_path: Path, context: Path, stack: LayerStack, canary: Path, several: bool, dest: str
) -> None:
    name = f"pipeline-canary-{uuid.uuid4().hex}"
    (context / name).write_text("x")
    before = listing(canary)
    layer = tmp_path / "layer"
    try:
        written = do_copy(
            context, stack, layer, [name, "src"] if several else [name], dest.format(name=name)
        )
    finally:
        assert listing(canary) == before
        assert not Path("/etc", name).exists()
    # The links were followed inside the image: the file sits under the image's /etc
    # or /tmp/..., in the layer, and the links themselves are left alone.
    (hit,) = [p for p in written if p.endswith(name)]
    inside = str(canary).lstrip("/")
    assert hit.startswith((f"{inside}/", "etc/")), hit
    assert (layer / hit).read_text() == "x"
    assert not any(p.startswith("evil") for p in written)


def test_layer_symlinks_from_an_earlier_source_are_not_followed(
    tmp_path: Path, context: Path, stack: LayerStack, canary: Path
) -> None:
    t1 = tmp_path / "t1"
    t1.mkdir()
    (t1 / "x").symlink_to(canary)
    write(tmp_path / "t2" / "x" / "f", "over")
    layer = tmp_path / "layer"
    layer.mkdir()
    trees = entry_trees([*select(t1, ["."], ()), *select(tmp_path / "t2", ["."], ())])
    copy_step(trees, "/d/", layer, stack)
    assert listing(layer) == ["d/", "d/x/", "d/x/f"]  # the dir replaced the link
    assert listing(canary) == ["keep.txt"]

    # A hand-made tree that writes below a symlink without a directory node for it.
    layer2 = tmp_path / "layer2"
    layer2.mkdir()
    st = os.lstat(tmp_path / "t2" / "x" / "f")
    sneaky = SourceTree(
        "t", "t", (SourceNode.of("", os.lstat(t1), str(t1), False),
                   SourceNode.of("x/f", st, str(tmp_path / "t2" / "x" / "f"), False)),
    )  # fmt: skip
    with pytest.raises(CopyError, match="not a directory in the layer being written"):
        copy_step([*entry_trees(select(t1, ["."], ())), sneaky], "/d/", layer2, stack)
    assert listing(canary) == ["keep.txt"]


def test_bad_names_in_trees_are_refused(tmp_path: Path, stack: LayerStack) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    st = os.lstat(f)
    for rel in ("../escape", "a/../../b", ".wh.x", "a//b"):
        tree = SourceTree("t", "t", (SourceNode.of("", os.lstat(tmp_path), str(tmp_path), False),
                                     SourceNode.of(rel, st, str(f), False)))  # fmt: skip
        layer = tmp_path / f"layer{abs(hash(rel))}"
        layer.mkdir()
        with pytest.raises(UnsafePathError):
            copy_step([tree], "/d/", layer, stack)
        assert listing(layer) == []


def test_later_source_wins(tmp_path: Path, stack: LayerStack) -> None:
    write(tmp_path / "one" / "same.txt", "one")
    write(tmp_path / "two" / "same.txt", "two")
    layer = tmp_path / "layer"
    do_copy(tmp_path, stack, layer, ["one", "two", "one/same.txt"], "/d/")
    assert (layer / "d" / "same.txt").read_text() == "one"
    layer = tmp_path / "layer2"
    do_copy(tmp_path, stack, layer, ["one", "two"], "/d/")
    assert (layer / "d" / "same.txt").read_text() == "two"


def test_copy_from_another_image(tmp_path: Path, stack: LayerStack) -> None:
    lower = tmp_path / "src-lower"
    write(lower / "build" / "app.bin", "binary", 0o755)
    write(lower / "build" / "gone.txt", "deleted above")
    os.chown(lower / "build" / "app.bin", 1000, 1000)
    upper = tmp_path / "src-upper"
    (upper / "build").mkdir(parents=True)
    os.mknod(upper / "build" / "gone.txt", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    (upper / "build" / "current").symlink_to("app.bin")
    (upper / "out").symlink_to("/build")
    source = LayerStack([upper, lower])

    layer = tmp_path / "layer"
    layer.mkdir()
    copy_step(image_trees(source, ["/out/"]), "/usr/local/bin/", layer, stack)
    assert listing(layer) == [
        "usr/", "usr/local/", "usr/local/bin/",
        "usr/local/bin/app.bin", "usr/local/bin/current -> app.bin",
    ]  # fmt: skip
    assert meta(layer / "usr/local/bin/app.bin") == ("0o755", 1000, 1000)  # --from keeps owners

    layer2 = tmp_path / "layer2"
    layer2.mkdir()
    trees = image_trees(source, ["build/c*", "/build/app.*"])
    copy_step(trees, "/x/", layer2, stack, chown="www")
    assert listing(layer2) == ["x/", "x/app.bin", "x/current -> app.bin"]
    assert meta(layer2 / "x" / "app.bin") == ("0o755", 33, 33)

    with pytest.raises(CopyError, match=r"^/build/gone.txt: no such file"):
        image_trees(source, ["/build/gone.txt"])


def test_run_copy_with_model_step(tmp_path: Path, context: Path, stack: LayerStack) -> None:
    (context / "src" / "__pycache__").mkdir()
    write(context / "src" / "__pycache__" / "m.pyc", "junk")
    step = Copy(
        sources=("src",), dest="app/", context=str(context), chown="app",
        ignore=("__pycache__/", "*.pyc", "src/pkg/mod.py"),
    )  # fmt: skip
    layer = tmp_path / "layer"
    layer.mkdir()
    run_copy(step, layer, stack.layers, None, "/home/app")
    assert listing(layer) == [
        "home/", "home/app/", "home/app/app/",
        "home/app/app/abs -> /etc/passwd", "home/app/app/link -> ../a.txt",
        "home/app/app/main.py", "home/app/app/pkg/",
    ]  # fmt: skip


@pytest.mark.parametrize("source", ["../outside", "src/../../outside", "esc", "esc/x"])
def test_run_copy_refuses_hostile_context(
    tmp_path: Path, context: Path, stack: LayerStack, canary: Path, source: str
) -> None:
    (context / "esc").symlink_to(canary)
    layer = tmp_path / "layer"
    layer.mkdir()
    with pytest.raises(UnsafePathError):
        run_copy(Copy(sources=(source,), dest="/d/", context=str(context)), layer, [], None, "/")
    assert listing(layer) == []


def test_big_file_copies_exactly(tmp_path: Path, stack: LayerStack) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "big").write_bytes(data)
    layer = tmp_path / "layer"
    do_copy(tmp_path / "ctx", stack, layer, ["big"], "/big")
    assert (layer / "big").read_bytes() == data


def test_add_unpacks_archives_by_content_and_copies_other_files(
    tmp_path: Path, stack: LayerStack
) -> None:
    import io
    import tarfile

    ctx = tmp_path / "addctx"
    ctx.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("top/hello.txt")
        info.size, info.mode, info.uid, info.gid = 2, 0o640, 5, 6
        tar.addfile(info, io.BytesIO(b"hi"))
    (ctx / "bundle.bin").write_bytes(buf.getvalue())  # content decides, not the name
    write(ctx / "plain.tar.gz", "not really a tarball\n")
    step = Copy(("bundle.bin", "plain.tar.gz"), "/opt/new/", str(ctx), unpack=True)
    layer = tmp_path / "layer"
    layer.mkdir()
    digest = run_copy(step, layer, stack.layers, None, "/")
    assert digest is not None and digest.startswith("sha256:")
    assert (layer / "opt" / "new" / "top" / "hello.txt").read_bytes() == b"hi"
    assert meta(layer / "opt" / "new" / "top" / "hello.txt") == ("0o640", 5, 6)
    assert (layer / "opt" / "new" / "plain.tar.gz").read_text() == "not really a tarball\n"
    assert not (layer / "opt" / "new" / "bundle.bin").exists()
