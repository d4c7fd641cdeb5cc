"""No command destroys or overwrites a user's data: `export -o`, `--json-report` and the
read-only path options, against existing dirs, files and symlinks. The unit tests run on
`build.outputs.place`; the end-to-end ones on the real CLI with a real image."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.build.outputs import MARKER, merge_tree, place
from pipeline.errors import UsageError
from tests.conftest import Cli


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (``root`` itself included) with its kind and content."""
    out = {}
    paths = [root, *sorted(root.rglob("*"))] if root.is_dir() and not root.is_symlink() else [root]
    for p in paths:
        if p.is_symlink():
            out[str(p)] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[str(p)] = "dir"
        elif p.exists():
            out[str(p)] = "file:" + hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def write_dir(tmp: Path) -> None:
    tmp.mkdir()
    (tmp / "index.json").write_text("{}")


def write_file(tmp: Path) -> None:
    tmp.write_text("output")


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".pipeline-" in p.name]


def test_a_new_path_gets_the_output(tmp_path: Path) -> None:
    place(tmp_path / "out", write_dir, directory=True)
    assert (tmp_path / "out" / "index.json").read_text() == "{}"
    assert (tmp_path / "out" / MARKER).is_file()
    place(tmp_path / "f.tar", write_file, directory=False)
    assert (tmp_path / "f.tar").read_text() == "output"
    assert leftovers(tmp_path) == []


def test_an_empty_directory_is_replaced_by_a_layout(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    place(tmp_path / "out", write_dir, directory=True)
    assert (tmp_path / "out" / "index.json").exists()


@pytest.mark.parametrize("force", [False, True])
def test_a_directory_with_contents_is_never_touched(tmp_path: Path, force: bool) -> None:
    target = tmp_path / "photos"
    target.mkdir()
    (target / "cat.jpg").write_bytes(b"\xff\xd8 precious")
    (target / "sub").mkdir()
    before = snapshot(target)
    with pytest.raises(UsageError, match=r"photos: a directory exists; refusing"):
        place(target, write_dir, directory=True, force=force)
    assert snapshot(target) == before
    assert leftovers(tmp_path) == []


def test_a_file_is_kept_unless_forced(tmp_path: Path) -> None:
    target = tmp_path / "image.tar"
    target.write_text("mine")
    with pytest.raises(UsageError, match="a file exists"):
        place(target, write_file, directory=False)
    assert target.read_text() == "mine"
    place(target, write_file, directory=False, force=True)
    assert target.read_text() == "output"


@pytest.mark.parametrize("force", [False, True])
def test_a_symlink_is_never_followed_or_replaced(tmp_path: Path, force: bool) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "out"
    link.symlink_to(victim)
    with pytest.raises(UsageError, match="a symlink exists"):
        place(link, write_file, directory=False, force=force)
    assert victim.read_text() == "keep me" and os.readlink(link) == str(victim)


def test_force_replaces_only_a_layout_we_wrote(tmp_path: Path) -> None:
    target = tmp_path / "layout"
    place(target, write_dir, directory=True)
    (target / "index.json").write_text('{"old": 1}')
    place(target, write_dir, directory=True, force=True)
    assert (target / "index.json").read_text() == "{}"
    assert leftovers(tmp_path) == []


def test_a_missing_parent_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a directory"):
        place(tmp_path / "no" / "such" / "out", write_file, directory=False)
    assert not (tmp_path / "no").exists()


def test_a_failed_write_leaves_nothing_and_keeps_lookalike_names(tmp_path: Path) -> None:
    lookalike = tmp_path / ".out.partial"
    lookalike.write_text("a user's file with a temp-looking name")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        place(tmp_path / "out", broken, directory=False)
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []
    assert lookalike.read_text() == "a user's file with a temp-looking name"


def test_a_replaceable_earlier_output_is_replaced(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text("{}")
    place(report, write_file, directory=False, replaceable=lambda p: p.read_text() == "{}")
    assert report.read_text() == "output"
    report.write_text("notes")
    with pytest.raises(UsageError):
        place(report, write_file, directory=False, replaceable=lambda p: p.read_text() == "{}")
    assert report.read_text() == "notes"


# ---------------------------------------------------------------------------------------
# the real commands

SPEC = """
image "tiny" {
  from = "busybox:latest"
  run { command = "echo hi > /hi" }
  tags = ["tiny:1"]
}
"""


@pytest.mark.root
@pytest.mark.parametrize("fmt", ["oci", "oci-archive", "docker-archive"])
def test_export_never_destroys_what_is_there(busybox_store: Cli, tmp_path: Path, fmt: str) -> None:
    cli = busybox_store
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("my notes")
    (home / "project").mkdir()
    (home / "project" / "main.c").write_text("int main(){}")
    (home / "link").symlink_to(home / "notes.txt")
    before = snapshot(home)
    for target in ("notes.txt", "project", "link", "."):
        proc = cli(
            "export", "busybox:latest", "-o", str(home / target), "--format", fmt, check=False
        )
        assert proc.returncode == 2, proc.stderr
        assert "refusing to overwrite" in proc.stderr and "Traceback" not in proc.stderr
        forced = cli(
            "export",
            "busybox:latest",
            "-o",
            str(home / target),
            "--format",
            fmt,
            "--force",
            check=False,
        )
        if target == "notes.txt" and fmt != "oci":
            assert forced.returncode == 0, forced.stderr  # --force may replace a file
            (home / "notes.txt").write_text("my notes")
        else:
            assert forced.returncode == 2, forced.stderr
    assert snapshot(home) == before
    fresh = home / "out"
    cli("export", "busybox:latest", "-o", str(fresh), "--format", fmt)
    assert fresh.exists() and leftovers(home) == []


@pytest.mark.root
def test_json_report_keeps_a_users_file_and_replaces_its_own(
    busybox_store: Cli, tmp_path: Path
) -> None:
    cli = busybox_store
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "fleet.hcl").write_text(SPEC)
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "data"}')
    proc = cli("build-all", "--specs", "specs", "--json-report", str(mine), check=False)
    assert proc.returncode == 2 and "refusing to overwrite" in proc.stderr
    assert mine.read_text() == '{"my": "data"}'
    report = tmp_path / "report.json"
    cli("build-all", "--specs", "specs", "--json-report", str(report))
    first = json.loads(report.read_text())
    cli("build-all", "--specs", "specs", "--json-report", str(report))  # ours: replaced
    assert json.loads(report.read_text())["totals"]["cached"] == first["totals"]["built"]


@pytest.mark.root
def test_read_only_path_options_leave_their_files_alone(
    busybox_store: Cli, busybox_tar: Path, tmp_path: Path
) -> None:
    cli = busybox_store
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "fleet.hcl").write_text(SPEC)
    watched = [busybox_tar, bundle, tmp_path / "specs"]
    before = {str(p): snapshot(p) for p in watched}
    cli("import", str(busybox_tar), "--tag", "again:1")
    cli("build-all", "--specs", "specs", "--ca-bundle", str(bundle))
    cli("validate", "--specs", "specs")
    cli("plan", "--specs", "specs")
    assert {str(p): snapshot(p) for p in watched} == before


def test_the_cli_says_when_it_tightens_an_open_store(cli: Cli, store_path: Path) -> None:
    cli("images")
    store_path.chmod(0o755)
    proc = cli("images")
    assert f"{store_path}: tightened mode 0755 to 0700" in proc.stderr
    assert (store_path.stat().st_mode & 0o777) == 0o700


def _tree(files: dict[str, str]) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        tmp.mkdir()
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)

    return write


def test_a_local_export_adds_files_and_replaces_only_its_own(tmp_path: Path) -> None:
    dest, records = tmp_path / "project", tmp_path / "records"
    dest.mkdir()
    (dest / "README").write_text("the user's")
    merge_tree(dest, _tree({"bin/tool": "v1"}), records)
    assert (dest / "bin" / "tool").read_text() == "v1"
    assert sorted(p.name for p in dest.iterdir()) == ["README", "bin"]  # nothing else
    merge_tree(dest, _tree({"bin/tool": "v2"}), records)  # ours, unchanged: replaced
    assert (dest / "bin" / "tool").read_text() == "v2"
    (dest / "bin" / "tool").write_text("edited by the user")
    with pytest.raises(UsageError, match="not written by an earlier export"):
        merge_tree(dest, _tree({"bin/tool": "v3"}), records)
    assert (dest / "bin" / "tool").read_text() == "edited by the user"
    with pytest.raises(UsageError, match="README: exists"):
        merge_tree(dest, _tree({"README": "image's", "new": "x"}), records)
    assert (dest / "README").read_text() == "the user's" and not (dest / "new").exists()
    assert [p.name for p in dest.iterdir() if p.name.startswith(".pipeline")] == []


def test_a_local_export_never_follows_a_symlink_in_dest(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "etc").symlink_to(outside)
    with pytest.raises(UsageError, match="etc: exists"):
        merge_tree(dest, _tree({"etc/passwd": "root"}), tmp_path / "records")
    assert list(outside.iterdir()) == []
