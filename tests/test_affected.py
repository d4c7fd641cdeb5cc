"""``pipeline affected --since REF`` on a real temporary git repository: a commit that
touches a source file, a shared base's spec, a ``.dockerignore``, the lock file; a
clean tree; a shallow clone. No store and no build are needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.build.affected import ImageChange, compare_graphs, pinned_bases
from pipeline.graph import compile_fleet
from pipeline.model import BaseRef, Fleet, ImageDef, Run

FLEET = """
image "base" {
  from = "busybox:latest"
  run { command = "mkdir -p /opt && echo base > /opt/base" }
}

app "a" {
  from   = image.base
  source = "src/a"
}

app "b" {
  from   = image.base
  source = "src/b"
}

app "c" {
  from   = "registry.example.com/team/runtime:1"
  source = "src/c"
}

group "ab" { targets = [app.a, app.b] }
"""

LOCK = {
    "comment": "test",
    "version": 1,
    "bases": {"registry.example.com/team/runtime:1": "sha256:" + "1" * 64},
}

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, **GIT_ENV),
        check=True,
    )
    return proc.stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def affected(repo: Path, since: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **GIT_ENV)
    env.pop("PIPELINE_STORE", None)
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "affected", "--since", since, *extra],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    specs = repo / "specs"
    for app in ("a", "b", "c"):
        (specs / "src" / app).mkdir(parents=True)
        (specs / "src" / app / "main.sh").write_text(f"echo {app}\n")
    (specs / "src" / "b" / "debug.log").write_text("kept in the context for now\n")
    (specs / "fleet.hcl").write_text(FLEET)
    (specs / "pipeline.lock").write_text(json.dumps(LOCK, indent=2))
    (repo / ".gitignore").write_text("build-output/\n")
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    commit(repo, "initial")
    return repo


def names(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return proc.stdout.split()


def test_each_kind_of_commit(repo: Path) -> None:
    specs = repo / "specs"
    c0 = git(repo, "rev-parse", "HEAD")

    clean = affected(repo, c0)
    assert (clean.returncode, clean.stdout, clean.stderr) == (0, "", "")

    # a source file of one app
    (specs / "src" / "a" / "main.sh").write_text("echo a, changed\n")
    dirty = affected(repo, c0)  # uncommitted changes count too
    assert (dirty.returncode, names(dirty)) == (1, ["app.a", "ab"])
    c1 = commit(repo, "a: source")
    proc = affected(repo, c0)
    assert (proc.returncode, names(proc)) == (1, ["app.a", "ab"]), proc.stderr
    assert affected(repo, c1).returncode == 0

    # the shared base's spec: every app on it, not the one on a registry base
    fleet = specs / "fleet.hcl"
    fleet.write_text(fleet.read_text().replace("echo base", "echo base v2"))
    c2 = commit(repo, "base: step")
    proc = affected(repo, c1, "--format", "json")
    assert proc.returncode == 1, proc.stderr
    body = json.loads(proc.stdout)
    assert body["names"] == ["app.a", "app.b", "ab"]
    assert body["commit"] == c1 and body["changed_paths"] == ["specs/fleet.hcl"]
    assert body["images"][0] == {
        "id": "app.a",
        "reason": "layers",
        "detail": "#1 RUN mkdir -p /opt && echo base v2 > /opt/base",
    }

    # a .dockerignore that drops a file from one context
    (specs / "src" / "b" / ".dockerignore").write_text("*.log\n")
    c3 = commit(repo, "b: ignore logs")
    proc = affected(repo, c2)
    assert (proc.returncode, names(proc)) == (1, ["app.b", "ab"]), proc.stderr
    # ...after which a change to an ignored file affects nothing
    (specs / "src" / "b" / "debug.log").write_text("more noise\n")
    c4 = commit(repo, "b: a log line")
    proc = affected(repo, c3)
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr

    # the lock file re-pins the registry base of one app
    lock = dict(LOCK, bases={"registry.example.com/team/runtime:1": "sha256:" + "2" * 64})
    (specs / "pipeline.lock").write_text(json.dumps(lock, indent=2))
    c5 = commit(repo, "lock: new runtime")
    proc = affected(repo, c4)
    assert (proc.returncode, names(proc)) == (1, ["app.c"]), proc.stderr

    # files git ignores inside a context are the same on both sides
    (specs / "src" / "a" / "build-output").mkdir()
    (specs / "src" / "a" / "build-output" / "x.o").write_text("object\n")
    proc = affected(repo, c5)
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr

    # the user's index and HEAD are untouched
    assert git(repo, "rev-parse", "HEAD") == c5
    assert git(repo, "status", "--porcelain") == ""

    # a shallow clone with the old commit fetched is enough
    clone = repo.parent / "clone"
    git(repo.parent, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))
    assert git(clone, "rev-parse", "--is-shallow-repository") == "true"
    missing = affected(clone, c1)
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"{c1}: no such commit here (in a shallow clone, fetch it")
    git(clone, "fetch", "-q", "--depth", "1", "origin", c1)
    proc = affected(clone, c1)
    assert (proc.returncode, names(proc)) == (1, ["app.a", "app.b", "app.c", "ab"]), proc.stderr


def test_new_removed_and_config_only(repo: Path) -> None:
    specs = repo / "specs"
    c0 = git(repo, "rev-parse", "HEAD")
    fleet = specs / "fleet.hcl"
    text = fleet.read_text().replace('app "c" {', 'app "d" {')
    text = text.replace('  source = "src/a"\n', '  source = "src/a"\n  env    = { X = "1" }\n')
    fleet.write_text(text)
    proc = affected(repo, c0, "--format", "json")
    assert proc.returncode == 1, proc.stderr
    images = {i["id"]: i["reason"] for i in json.loads(proc.stdout)["images"]}
    assert images == {"app.a": "config", "app.d": "new", "app.c": "removed"}
    assert names(affected(repo, c0)) == ["app.a", "app.d", "ab"]  # removed ones: not built


def test_errors_exit_2_with_one_line(repo: Path, tmp_path: Path) -> None:
    proc = affected(repo, "no-such-ref")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    (repo / "specs" / "fleet.hcl").write_text("app {")
    c1 = commit(repo, "broken")
    (repo / "specs" / "fleet.hcl").write_text(FLEET)
    proc = affected(repo, c1)
    assert proc.returncode == 2 and proc.stderr.startswith(f"{c1}: specs/fleet.hcl:1:"), proc.stderr
    outside = tmp_path / "plain"
    (outside / "specs").mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "affected", "--since", "HEAD"],
        cwd=outside,
        capture_output=True,
        text=True,
        env=dict(os.environ, GIT_CEILING_DIRECTORIES=str(tmp_path)),
        check=False,
    )
    assert proc.returncode == 2 and "not a git repository" in proc.stderr, proc.stderr


def _image(id_: str, command: str, base: str = "busybox:latest") -> ImageDef:
    return ImageDef(id_, BaseRef("store", base), (Run(command),), is_app=True)


def test_compare_graphs_is_pure() -> None:
    def graph(images: dict[str, ImageDef]) -> object:
        return compile_fleet(Fleet(images), {}, lambda c: "sha256:" + "0" * 64)

    old = graph({"app.x": _image("app.x", "true"), "app.y": _image("app.y", "true")})
    new = graph({"app.x": _image("app.x", "false"), "app.y": _image("app.y", "true")})
    changes, groups = compare_graphs(old, new, {"g": ("app.x",), "h": ("app.y",)})  # type: ignore[arg-type]
    assert changes == (ImageChange("app.x", "layers", "#1 RUN false"),)
    assert groups == ("g",)
    fleet = Fleet({"app.r": _image("app.r", "true", "")})
    assert pinned_bases(fleet, {"x": "sha256:" + "a" * 64}) == {}
