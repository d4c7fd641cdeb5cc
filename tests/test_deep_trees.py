"""Deep trees everywhere a tree is walked: build contexts, COPY, extraction, re-tarring
and removal. No recursion on input depth and no file descriptor per level: each runs
in a child process under a small ``ulimit -n``."""

from __future__ import annotations

import os
import resource
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from tests import hostile_inputs as h
from tests.bounded import base_env, pipeline_argv, run_bounded
from tests.conftest import Cli

REPO = Path(__file__).resolve().parent.parent


def few_fds(n: int):  # type: ignore[no-untyped-def]
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return limit


@pytest.fixture(autouse=True)
def remove_deep_trees(tmp_path: Path):  # type: ignore[no-untyped-def]
    """pytest removes tmp dirs with shutil.rmtree, which recurses: remove ours first."""
    yield
    from pipeline.fs.tree import remove_tree

    for child in tmp_path.iterdir():
        remove_tree(child)


def make_deep(root: Path, depth: int, leaf: str = "leaf.txt") -> None:
    """``root/d/d/.../d/leaf`` ``depth`` levels deep, made through fds (no long paths)."""
    root.mkdir(parents=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        leaf_fd = os.open(leaf, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf_fd, b"deep\n")
        os.close(leaf_fd)
    finally:
        os.close(fd)


COPY_SPEC = """
image "deep" {
  from = "busybox:latest"
  copy {
    src  = "src"
    dest = "/deep"
  }
  tags = ["deep:1"]
}
"""


@pytest.mark.slow
def test_copy_of_a_500_deep_tree_under_ulimit_256(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    specs = tmp_path / "specs"
    make_deep(specs / "src", 500)
    (specs / "a.hcl").write_text(COPY_SPEC)
    out = run_bounded(
        pipeline_argv("build-all", "--specs", str(specs), "--progress", "plain"),
        env=base_env(store_path),
        preexec=few_fds(256),
    )
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.describe()
    export = tmp_path / "deep.tar"
    out = run_bounded(
        pipeline_argv("export", "deep:1", "-o", str(export), "--format", "docker-archive"),
        env=base_env(store_path),
        preexec=few_fds(64),
    )
    assert out.returncode == 0, out.describe()
    with tarfile.open(export) as outer:
        layer_names = [m.name for m in outer.getmembers() if m.name.endswith("layer.tar")]
        last = outer.extractfile(layer_names[-1])
        assert last is not None
        with tarfile.open(fileobj=last) as layer:
            names = layer.getnames()
    assert "deep/" + "d/" * 500 + "leaf.txt" in names


def test_a_5000_deep_context_is_refused_in_one_line(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    make_deep(specs / "src", 5000)
    (specs / "a.hcl").write_text(COPY_SPEC)
    out = run_bounded(
        pipeline_argv("plan", "--specs", str(specs)),
        env=base_env(tmp_path / "store"),
        preexec=few_fds(64),
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.describe()
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.describe()
    assert lines[0].startswith(f'{specs}/a.hcl:4:3: COPY source "src": src/d/d/'), lines[0]
    assert "entries 1,025 levels deep; the limit is 1,024 levels" in lines[0]


def test_a_2000_deep_layer_imports_exports_and_is_removed_with_few_fds(tmp_path: Path) -> None:
    """With the depth limit raised, a layer 2,000 levels deep (paths of 4,000 bytes)
    is extracted, re-tarred, committed, exported and removed under ``ulimit -n 64``."""
    tar = tmp_path / "deep.tar"
    with open(tar, "wb") as f:
        for i in range(1, 2001):
            f.write(h.header("d/" * i, 0, tarfile.DIRTYPE, tarfile.PAX_FORMAT, mode=0o755))
        f.write(h.member("d/" * 2000 + "x", b"bottom", fmt=tarfile.PAX_FORMAT))
        f.write(h.END)
    store = tmp_path / "store"
    env = base_env(store, PIPELINE_LIMIT_PATH_DEPTH="3000")
    out = run_bounded(
        pipeline_argv("import", str(tar), "--tag", "deep:1"), env=env, preexec=few_fds(64)
    )
    assert out.returncode == 0, out.describe()
    layout = tmp_path / "layout"
    out = run_bounded(
        pipeline_argv("export", "deep:1", "-o", str(layout)), env=env, preexec=few_fds(64)
    )
    assert out.returncode == 0, out.describe()
    (layer,) = [p for p in (store / "layers").iterdir()]
    code = textwrap.dedent(
        f"""
        import resource, sys
        sys.path.insert(0, {str(REPO)!r})
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
        sys.setrecursionlimit(200)
        from pipeline.fs.tree import remove_tree
        remove_tree({str(layer)!r})
        """
    )
    out = run_bounded([sys.executable, "-c", code])
    assert out.returncode == 0, out.describe()
    assert not layer.exists()


def test_remove_tree_never_follows_a_symlink(tmp_path: Path) -> None:
    from pipeline.fs.tree import remove_tree

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep me\n")
    tree = tmp_path / "tree"
    make_deep(tree, 50)
    os.symlink(outside, tree / "d" / "link")
    os.symlink(outside, tmp_path / "top-link")
    remove_tree(tree)
    remove_tree(tmp_path / "top-link")
    assert not tree.exists() and not (tmp_path / "top-link").exists()
    assert (outside / "keep").read_text() == "keep me\n"
