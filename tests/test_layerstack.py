"""LayerStack: the merged view of overlay-format layer dirs (real files; root for
whiteouts and trusted.* xattrs)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pipeline.fs.layerstack import OPAQUE_XATTR, LayerStack, LayerStackError, SymlinkLoopError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and trusted xattrs need root")


def build(root: Path, spec: dict[str, str | None]) -> Path:
    """A layer dir from ``{path: content}``: a path ending in "/" is a directory,
    "-> target" a symlink, None a whiteout, "/opaque" after a dir name an opaque dir."""
    root.mkdir(parents=True)
    for path, content in spec.items():
        opaque = path.endswith("/opaque")
        path = path.removesuffix("opaque")
        target = root / path.strip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        elif path.endswith("/"):
            target.mkdir(exist_ok=True)
            if opaque:
                os.setxattr(target, OPAQUE_XATTR, b"y")
        elif content.startswith("-> "):
            target.symlink_to(content[3:])
        else:
            target.write_text(content)
    return root


@pytest.fixture
def stack(tmp_path: Path) -> LayerStack:
    base = build(
        tmp_path / "base",
        {
            "etc/passwd": "root:x:0:0::/root:/bin/sh\n",
            "etc/hosts": "base hosts",
            "etc/motd": "hello",
            "opt/app/old.txt": "old",
            "opt/app/keep/x.txt": "x",
            "usr/lib/libc.so": "libc",
            "var/cache/": "",
            "data": "a file that a later layer turns into a dir",
        },
    )
    mid = build(
        tmp_path / "mid",
        {
            "etc/motd": None,  # deleted
            "etc/hosts": "mid hosts",
            "opt/app/opaque": "",  # replaces /opt/app wholesale
            "opt/app/new.txt": "new",
            "lib": "-> usr/lib",
            "data/inside.txt": "in",
            "var/cache": None,
        },
    )
    top = build(
        tmp_path / "top",
        {
            "etc/issue": "top issue",
            "abs": "-> /etc",
            "escape": "-> ../../../../etc",
            "dotdot": "-> /../../..",
            "loop1": "-> loop2",
            "loop2": "-> /loop1",
            "chain": "-> lib",
            "var/cache/": "",  # a dir again, above the whiteout: empty
            "var/cache/fresh": "fresh",
        },
    )
    return LayerStack([top, mid, base])


def test_top_most_entry_wins(stack: LayerStack) -> None:
    assert stack.read_bytes("/etc/hosts") == b"mid hosts"
    assert stack.read_bytes("/etc/passwd") == b"root:x:0:0::/root:/bin/sh\n"
    host = stack.host_path("/etc/issue")
    assert host is not None and host.parent.parent.name == "top"


def test_whiteout_hides_lower_entry(stack: LayerStack) -> None:
    assert stack.lstat("/etc/motd") is None
    assert stack.host_path("/etc/motd") is None
    assert stack.read_bytes("/etc/motd") is None
    assert "motd" not in stack.listdir("/etc")


def test_dir_above_whiteout_does_not_see_below(stack: LayerStack) -> None:
    assert stack.listdir("/var/cache") == ["fresh"]


def test_opaque_dir_hides_lower_contents(stack: LayerStack) -> None:
    assert stack.listdir("/opt/app") == ["new.txt"]
    assert stack.lstat("/opt/app/old.txt") is None
    assert stack.lstat("/opt/app/keep/x.txt") is None
    assert stack.lstat("/opt/app/new.txt") is not None


def test_dir_over_file_hides_file(stack: LayerStack) -> None:
    st = stack.lstat("/data")
    assert st is not None and stat.S_ISDIR(st.st_mode)
    assert stack.listdir("/data") == ["inside.txt"]


def test_listdir_merges_layers(stack: LayerStack) -> None:
    assert stack.listdir("/etc") == ["hosts", "issue", "passwd"]
    assert stack.listdir("/") == [
        "abs", "chain", "data", "dotdot", "escape", "etc", "lib", "loop1", "loop2", "opt", "usr",
        "var",
    ]  # fmt: skip


def test_listdir_errors(stack: LayerStack) -> None:
    with pytest.raises(LayerStackError, match=r"^/etc/motd: no such directory"):
        stack.listdir("/etc/motd")
    with pytest.raises(LayerStackError, match=r"^/etc/hosts: not a directory"):
        stack.listdir("/etc/hosts")


def test_walk_is_merged_sorted_and_depth_first(stack: LayerStack) -> None:
    paths = [e.path for e in stack.walk("/opt")]
    assert paths == ["/opt", "/opt/app", "/opt/app/new.txt"]
    entries = {e.path: e for e in stack.walk("/etc")}
    assert sorted(entries) == ["/etc", "/etc/hosts", "/etc/issue", "/etc/passwd"]
    assert entries["/etc/hosts"].host.read_text() == "mid hosts"
    everything = [e.path for e in stack.walk("/")]
    assert (
        everything.index("/usr") < everything.index("/usr/lib/libc.so") < everything.index("/var")
    )
    assert "/etc/motd" not in everything and "/opt/app/old.txt" not in everything


def test_walk_yields_symlink_itself(stack: LayerStack) -> None:
    (entry,) = list(stack.walk("/lib"))
    assert stat.S_ISLNK(entry.stat.st_mode)


@pytest.mark.parametrize(
    ("path", "follow_last", "expected"),
    [
        ("/etc/hosts", True, "/etc/hosts"),
        ("etc//./hosts", True, "/etc/hosts"),
        ("/lib/libc.so", True, "/usr/lib/libc.so"),  # relative link
        ("/chain/libc.so", True, "/usr/lib/libc.so"),  # link to a link
        ("/abs/passwd", True, "/etc/passwd"),  # absolute link: from the image root
        ("/escape/passwd", True, "/etc/passwd"),  # .. never climbs above /
        ("/dotdot", True, "/"),
        ("/../../etc", True, "/etc"),
        ("/lib/../etc", True, "/usr/etc"),  # .. after a link is physical
        ("/lib", False, "/lib"),
        ("/abs", True, "/etc"),
        ("/missing/../abs/x", True, "/etc/x"),
        ("/abs/new/dir", True, "/etc/new/dir"),  # missing components are kept
    ],
)
def test_resolve_stays_inside_root(
    stack: LayerStack, path: str, follow_last: bool, expected: str
) -> None:
    assert stack.resolve(path, follow_last=follow_last) == expected


def test_resolve_loop_is_an_error(stack: LayerStack) -> None:
    with pytest.raises(SymlinkLoopError, match=r"^/loop1/x: too many levels of symbolic links"):
        stack.resolve("/loop1/x")


def test_read_bytes_follows_links_within_image_only(stack: LayerStack) -> None:
    assert stack.read_bytes("/abs/passwd") == b"root:x:0:0::/root:/bin/sh\n"
    assert stack.read_bytes("/escape/hosts") == b"mid hosts"
    with pytest.raises(LayerStackError, match=r"^/etc: not a regular file"):
        stack.read_bytes("/abs")
    assert stack.readlink("/abs") == "/etc"


def test_empty_stack_is_scratch() -> None:
    stack = LayerStack([])
    assert stack.lstat("/etc") is None
    assert stack.resolve("/a/../b/") == "/b"
    assert stack.read_bytes("/etc/passwd") is None
