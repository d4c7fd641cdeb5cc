"""Fast checks of the differential suite's own machinery: the tree and config
comparison, written expectations, the case table, archives, verdicts and the daemon's
failure report. The slow suite itself is tests/test_dockerfile_differential.py."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from tests import oracle, written
from tests.differential import CASES_DIR, Case, load_bases, load_cases, make_tar, verdict
from tests.oracle import Entry, config_facts, diff_configs, diff_trees, scan_tree

NAMES = ("left", "right")


def _tree(root: Path) -> Path:
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_text("x\n")
    os.link(root / "d" / "f", root / "d" / "h")
    os.symlink("f", root / "d" / "l")
    (root / "s").write_text("s\n")
    os.chmod(root / "s", 0o4755)
    return root


def test_scan_tree_records_what_is_compared(tmp_path: Path) -> None:
    tree = scan_tree(_tree(tmp_path / "a"))
    assert set(tree) == {"/", "/d", "/d/f", "/d/h", "/d/l", "/s"}
    assert tree["/d/f"].links == ("/d/f", "/d/h") == tree["/d/h"].links
    assert tree["/d/l"] == Entry("symlink", tree["/d/l"].mode, tree["/d/l"].uid,
                                 tree["/d/l"].gid, target="f")  # fmt: skip
    assert tree["/s"].mode == 0o4755 and tree["/s"].kind == "file"
    assert tree["/d/f"].sha256 == tree["/d/h"].sha256 != tree["/s"].sha256


def test_identical_trees_have_no_differences(tmp_path: Path) -> None:
    a = scan_tree(_tree(tmp_path / "a"))
    b = scan_tree(_tree(tmp_path / "b"))
    assert diff_trees(a, b, NAMES) == []


def test_each_kind_of_difference_is_one_line_per_path(tmp_path: Path) -> None:
    a = scan_tree(_tree(tmp_path / "a"))
    b_root = _tree(tmp_path / "b")
    os.chmod(b_root / "s", 0o755)  # setuid lost
    (b_root / "d" / "l").unlink()
    os.symlink("h", b_root / "d" / "l")  # other target
    (b_root / "d" / "h").unlink()
    (b_root / "d" / "h").write_text("x\n")  # same bytes, no longer a hard link
    (b_root / "extra").write_text("e\n")
    os.setxattr(b_root / "d" / "f", "user.note", b"n")
    lines = diff_trees(a, scan_tree(b_root), NAMES)
    assert lines == [
        "/d/f: xattrs left {}, right {'user.note': 'n'}; hard links left ['/d/f', '/d/h'],"
        " right []",
        "/d/h: hard links left ['/d/f', '/d/h'], right []",
        "/d/l: symlink target left 'f', right 'h'",
        f"/extra: only in right (file 0644 {os.getuid()}:{os.getgid()})",
        "/s: mode left 4755, right 0755",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_and_content_differences(tmp_path: Path) -> None:
    a = scan_tree(_tree(tmp_path / "a"))
    b_root = _tree(tmp_path / "b")
    os.chown(b_root / "s", 5, 6)  # and chown clears the setuid bit
    (b_root / "d" / "f").write_text("y\n")  # the link shares the new bytes
    lines = diff_trees(a, scan_tree(b_root), NAMES)
    assert [ln.split(":")[0] for ln in lines] == ["/d/f", "/d/h", "/s"]
    assert "content left sha256:" in lines[0]
    assert lines[2] == "/s: mode left 4755, right 0755; owner left 0:0, right 5:6"


def test_config_facts_normalise_empty_fields_and_count_layers() -> None:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": None,
            "Entrypoint": [],
            "Labels": {},
            "Healthcheck": {"Test": ["NONE"], "Interval": 0, "Retries": 0},
            "Hostname": "abc",
        },
        "rootfs": {"diff_ids": ["sha256:a", "sha256:b"]},
        "history": [{"created_by": "x"}, {"empty_layer": True}, {"created_by": "y"}],
    }
    assert config_facts(config) == {
        "Env": ["PATH=/bin"],
        "Healthcheck": {"Test": ["NONE"]},
        "os": "linux",
        "architecture": "amd64",
        "layers": 2,
        "history_layers": 2,
    }


def test_diff_configs_names_each_field() -> None:
    a = config_facts({"config": {"StopSignal": "SIGQUIT", "Volumes": {"/v": {}}}})
    b = config_facts({"config": {"Volumes": {"/w": {}}}, "author": "me"})
    assert diff_configs(a, b, NAMES) == [
        'config Volumes: left {"/v": {}}, right {"/w": {}}',
        'config StopSignal: left "SIGQUIT", right (none)',
        'config author: left (none), right "me"',
    ]


BASE = {
    "/": Entry("dir", 0o755),
    "/etc": Entry("dir", 0o755),
    "/etc/group": Entry("file", 0o644, sha256="g"),
    "/bin": Entry("dir", 0o755),
    "/bin/busybox": Entry("file", 0o755, sha256="bb"),
}


def test_written_tree_defaults_absent_same_as_and_links() -> None:
    tree = written.expected_tree(
        BASE,
        {
            "paths": {
                "/etc": "absent",
                "/opt": {"type": "dir", "uid": 5, "gid": 6},
                "/opt/bb": {"mode": "0700", "same_as": "/bin/busybox"},
                "/opt/l": {"type": "symlink", "target": "bb"},
                "/opt/h": {"same_as": "/opt/bb", "mode": "0700"},
            },
            "hardlinks": [["/opt/bb", "/opt/h"]],
        },
    )
    assert "/etc" not in tree and "/etc/group" not in tree
    assert tree["/opt"] == Entry("dir", 0o755, 5, 6)
    assert tree["/opt/bb"] == Entry("file", 0o700, sha256="bb", links=("/opt/bb", "/opt/h"))
    assert tree["/opt/l"] == Entry("symlink", 0o777, target="bb")


@pytest.mark.parametrize(
    "spec",
    [{"type": "file"}, {"type": "symlink"}, {"colour": "red", "content": ""}, {"type": "x"}],
)
def test_written_tree_refuses_incomplete_entries(spec: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="/x"):
        written.expected_tree(BASE, {"paths": {"/x": spec}})


def test_written_check_catches_an_unlisted_path_and_a_wrong_fact() -> None:
    image = dict(BASE, **{"/new": Entry("file", 0o644, sha256="n"), "/junk": Entry("dir", 0o755)})
    config = {"config": {"Env": ["A=1"]}, "rootfs": {"diff_ids": ["a", "b"]}, "history": [{}, {}]}
    base_config = {"config": {}, "rootfs": {"diff_ids": ["a"]}, "history": [{}]}
    expect = {"paths": {"/new": {"sha256": "n"}}, "config": {"layers": 2, "history_layers": 2}}
    assert written.check(image, config, BASE, base_config, expect, "pipeline") == [
        "/junk: only in pipeline (dir 0755 0:0)",
        'config Env: written (none), pipeline ["A=1"]',
    ]


def _case(**kw: object) -> Case:
    return Case(name="001-x", dir=Path("/c/001-x"), description="d", **kw)  # type: ignore[arg-type]


def test_verdicts() -> None:
    assert verdict(_case(), []) == ("pass", "")
    assert verdict(_case(), ["/a: only in buildkit"])[0] == "fail"
    kind, message = verdict(_case(pending="VOLUME"), ["/a: only in buildkit"])
    assert kind == "xfail" and "VOLUME" in message and "/a: only in buildkit" in message
    kind, message = verdict(_case(pending="VOLUME"), [])
    assert kind == "fail" and "remove its pending mark" in message


def test_case_table_is_well_formed() -> None:
    cases = load_cases()
    assert len(cases) >= 90
    bases = load_bases()
    for case in cases:
        text = case.dockerfile.read_text()
        for line in text.splitlines():
            word = line.split()[1] if line.startswith("FROM ") else ""
            if word.startswith("case-base/"):
                assert word in bases, f"{case.name}: unknown crafted base {word}"
                assert bases[word].changes, f"{word}: changes nothing"
        if case.oracle == "written":
            assert case.expect is not None
            if "error" not in case.expect:
                written.expected_tree(BASE, case.expect)  # raises on a malformed entry
        for secret in case.secrets.values():
            assert (case.dir / secret).is_file(), f"{case.name}: secret file {secret}"
    assert {p.name for p in CASES_DIR.iterdir() if p.is_dir()} == {c.name for c in cases}


@pytest.mark.parametrize("compression", ["none", "gz", "bz2", "xz"])
def test_make_tar_writes_modes_owners_links_and_xattrs(compression: str) -> None:
    data = make_tar(
        {
            "path": "a.tar",
            "compression": compression,
            "entries": [
                {"name": "d/", "type": "dir", "mode": "0750", "uid": 5, "gid": 6},
                {"name": "d/f", "content": "x", "mode": "4755", "xattrs": {"user.a": "b"}},
                {"name": "d/h", "type": "hardlink", "target": "d/f"},
                {"name": "d/l", "type": "symlink", "target": "f"},
            ],
        }
    )
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["d"].isdir() and members["d"].mode == 0o750 and members["d"].uid == 5
    assert members["d/f"].mode == 0o4755 and members["d/f"].size == 1
    assert members["d/f"].pax_headers["SCHILY.xattr.user.a"] == "b"
    assert members["d/h"].islnk() and members["d/l"].issym() and members["d/l"].linkname == "f"


def test_dockerd_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "dockerd"
    fake.write_text("#!/bin/sh\necho 'failed to start daemon: no overlay here' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    daemon = oracle.Dockerd(binary=str(fake))
    with pytest.raises(oracle.OracleUnavailable, match="no overlay here"):
        daemon.start(timeout=20)
    assert not daemon.root.exists()
    daemon.stop()  # twice is fine
