"""The CI commands for real: ``why``, ``verify``, ``bench`` and ``report`` on a busybox
fleet built in the real sandbox; the report opened in headless Chromium. Needs root
with overlayfs (CI is root)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Cli

pytestmark = pytest.mark.slow

ARTIFACTS = Path(os.environ.get("PIPELINE_TEST_ARTIFACTS") or REPO / "test-artifacts")

FLEET = """
image "base" {
  from = "busybox:latest"
  env { GREETING = "hello" }
  run { command = "mkdir -p /opt && echo $GREETING > /opt/greeting" }
}

image "tools" {
  from = image.base
  run { command = "mkdir -p /opt/tools && seq 1 5000 > /opt/tools/list" }
}

app "one" {
  from    = image.tools
  source  = "src/one"
  workdir = "/srv"
  env     = { APP = "one" }
}

app "two" {
  inherits = [app.one]
  source   = "src/two"
  env      = { APP = "two" }
}

app "three" {
  inherits = [app.one]
  from     = image.base
  source   = "src/three"
  env      = { APP = "three" }
}
"""


def write_fleet(root: Path, extra: str = "") -> Path:
    specs = root / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    (specs / "fleet.hcl").write_text(FLEET + extra)
    for app in ("one", "two", "three"):
        src = specs / "src" / app
        src.mkdir(parents=True, exist_ok=True)
        (src / "main.sh").write_text(f"echo {app}\n")
        (src / "notes.txt").write_text(f"notes of {app}\n")
    return specs


def tree_state(root: Path) -> str:
    """A digest of every path, kind, mode, size, mtime and content under ``root``."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        h.update(f"{path.relative_to(root)}|{st.st_mode}|{st.st_size}|{st.st_mtime_ns}".encode())
        if path.is_file() and not path.is_symlink():
            h.update(path.read_bytes())
    return h.hexdigest()


def check_build_report_schema(body: dict) -> None:
    """The ``--json-report`` schema, version 1, as docs/ci.md documents it."""
    assert body["schema"] == "pipeline-build-report" and body["version"] == 1
    assert set(body) == {"schema", "version", "totals", "images", "rows", "nodes"}
    assert set(body["totals"]) == {
        "unique_nodes", "built", "cached", "pulled", "failed", "skipped", "hit_ratio",
        "bytes_written", "unique_bytes", "naive_bytes", "saved_bytes", "seconds",
    }  # fmt: skip
    for image in body["images"].values():
        assert set(image) == {"manifest", "names"}
    for row in body["rows"]:
        assert set(row) == {"image", "layers", "cached", "pulled", "built", "seconds"}
    for node in body["nodes"]:
        assert set(node) == {"key", "label", "kind", "apps", "outcome", "seconds", "size"}
    assert body["nodes"] and body["rows"]


def test_why_names_the_changed_input(busybox_store: Cli, tmp_path: Path) -> None:
    cli = busybox_store
    specs = write_fleet(tmp_path)
    report = tmp_path / "build.json"
    cli("build-all", "--progress", "quiet", "--json-report", str(report))
    check_build_report_schema(json.loads(report.read_text()))
    fleet_file = specs / "fleet.hcl"
    original = fleet_file.read_text()

    out = cli("why", "one").stdout
    assert out.strip() == "app.one: every layer is in the store and matches build #1"

    # one env var: the base's GREETING feeds its RUN step and everything above it
    fleet_file.write_text(original.replace('GREETING = "hello"', 'GREETING = "bonjour"'))
    out = cli("why", "one").stdout
    assert 'env GREETING: "hello" -> "bonjour"' in out
    assert "#1 RUN mkdir -p /opt && echo $GREETING > /opt/greeting  [not in store]" in out
    assert "parent:" in out  # the layers above differ through their parent only
    assert "command:" not in out and "files " not in out
    data = json.loads(cli("why", "one", "1", "--format", "json").stdout)
    (node,) = data[0]["nodes"]
    assert node["changes"] == [
        {"what": "env", "name": "GREETING", "old": "hello", "new": "bonjour"}
    ]

    # one command
    fleet_file.write_text(original.replace("seq 1 5000", "seq 1 6000"))
    out = cli("why", "two").stdout
    assert (
        'command: "mkdir -p /opt/tools && seq 1 5000 > /opt/tools/list" -> '
        '"mkdir -p /opt/tools && seq 1 6000 > /opt/tools/list"'
    ) in out
    assert "env " not in out
    assert "#1 " not in out  # the base's RUN did not change
    fleet_file.write_text(original)

    # one file: named, with the attribute that changed; nothing else differs
    (specs / "src" / "three" / "notes.txt").write_text("new notes\n")
    (specs / "src" / "three" / "added.txt").write_text("added\n")
    out = cli("why", "three").stdout
    assert "app.three: 1 of 3 layers differ from build #1" in out
    assert "files added (1): added.txt" in out
    assert "files modified (1): notes.txt (content)" in out
    assert "parent:" not in out and "env " not in out
    # after building it, why still explains the rebuilt layer, now in the store
    cli("build-all", "--progress", "quiet")
    out = cli("why", "three").stdout
    assert "files modified (1): notes.txt (content)" in out
    assert "[in store]" in out
    assert "app.two: every layer is in the store" in cli("why", "two").stdout


def test_verify_green_then_red_for_a_time_stamping_step(
    busybox_store: Cli, tmp_path: Path, store_path: Path
) -> None:
    cli = busybox_store
    write_fleet(tmp_path)
    cli("build-all", "--progress", "quiet")
    before = sorted(p.name for p in (store_path / "layers").iterdir())
    ok = cli("verify")
    assert "3 of 3 images reproducible" in ok.stdout, ok.stdout
    assert "app.one: ok (3 layers reproduced)" in ok.stdout
    # the store gained no layer and kept no scratch directory
    assert sorted(p.name for p in (store_path / "layers").iterdir()) == before
    assert list((store_path / "tmp").iterdir()) == []

    clock = 'image "clock" {\n  from = image.base\n  run { command = "date > /t" }\n'
    write_fleet(tmp_path, clock + '  tags = ["acme/clock:1"]\n}\n')
    cli("build", "clock", "--progress", "quiet")
    time.sleep(1.1)  # `date` prints seconds: the rebuild must see another one
    bad = cli("verify", "clock", "one", check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    lines = bad.stdout.splitlines()
    assert lines[0].startswith(
        "image.clock: NOT reproducible: 1 of 2 layers differ; first: #2 RUN date > /t"
    )
    assert "    t: content" in lines
    assert "app.one: ok (3 layers reproduced)" in lines
    report = json.loads(cli("verify", "clock", "--format", "json", check=False).stdout)
    assert report["ok"] is False
    (layer,) = report["apps"][0]["differing"]
    assert layer["files"] == [{"path": "t", "attributes": ["content"]}]


def test_bench_measures_a_copy_and_leaves_the_fleet_alone(
    busybox_store: Cli, tmp_path: Path, store_path: Path
) -> None:
    cli = busybox_store
    specs = write_fleet(tmp_path)
    before = tree_state(specs)
    db = store_path / "index.db"
    rows_before = sqlite3.connect(db).execute("SELECT count(*) FROM cache").fetchone()
    out_json = tmp_path / "bench.json"
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch)}
    proc = cli("bench", "--rounds", "2", "--json", str(out_json), env=env, timeout=600)
    assert tree_state(specs) == before
    assert sqlite3.connect(db).execute("SELECT count(*) FROM cache").fetchone() == rows_before
    assert list(scratch.iterdir()) == []  # the copy and the scratch store are gone
    report = json.loads(out_json.read_text())
    assert report["schema"] == "pipeline-bench" and report["version"] == 1
    assert set(report) == {"schema", "version", "specs", "change", "rounds", "jobs", "cpus",
                           "phases", "disk"}  # fmt: skip
    names = [(p["name"], p["app"]) for p in report["phases"]]
    assert names == [
        ("cold", ""),
        ("no-op", ""),
        ("change", "app.one"),
        ("change", "app.three"),
        ("change", "app.two"),
    ]
    keys = {"seconds", "layers_rebuilt", "layers_cached", "hit_ratio", "bytes_written",
            "unique_bytes", "naive_bytes", "saved_bytes", "apps_rebuilt"}  # fmt: skip
    for phase in report["phases"]:
        assert set(phase) == {"name", "app", "changed", "rounds", "note", "seconds"}
        for r in phase["rounds"]:
            assert set(r) == keys
    cold, noop, *changes = report["phases"]
    assert cold["rounds"][0]["layers_rebuilt"] == 5 and cold["rounds"][0]["layers_cached"] == 0
    assert len(noop["rounds"]) == 2
    assert all(r["layers_rebuilt"] == 0 and r["hit_ratio"] == 1.0 for r in noop["rounds"])
    for phase in changes:
        assert phase["changed"] == f"src/{phase['app'][4:]}/main.sh"
        assert len(phase["rounds"]) == 2
        for r in phase["rounds"]:
            assert r["layers_rebuilt"] == 1 and r["apps_rebuilt"] == [phase["app"]]
            assert r["bytes_written"] > 0
    # base + base RUN are shared by all three, tools by one and two: sharing saves bytes
    assert report["disk"]["saved_bytes"] > 0
    assert (
        report["disk"]["naive_bytes"] - report["disk"]["unique_bytes"]
        == (report["disk"]["saved_bytes"])
    )
    table = proc.stdout.splitlines()
    assert table[0].split() == ["phase", "changed", "time", "rebuilt", "written", "hits", "apps",
                                "rebuilt"]  # fmt: skip
    assert any(line.startswith("change one") and "src/one/main.sh" in line for line in table)
    assert any(line.startswith("disk: images") and "sharing saves" in line for line in table)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    argv = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_html_report_renders_in_chromium(busybox_store: Cli, tmp_path: Path) -> None:
    cli = busybox_store
    specs = write_fleet(tmp_path)
    cli("build-all", "--progress", "quiet")
    (specs / "src" / "one" / "main.sh").write_text("echo changed\n")
    cli("build-all", "--progress", "quiet")
    page = tmp_path / "report.html"
    out = cli("report", "-o", str(page)).stdout
    assert out.startswith(f"wrote {page} (")
    text = page.read_text()
    # self-contained: no URL is fetched at view time
    assert "<script src=" not in text and "<link " not in text
    assert 'class="node' in text and "shared by 3 apps" in text

    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    start = dom.stdout.index('<div id="report-status"')
    status = dom.stdout[start : dom.stdout.index(">", start)]
    assert 'data-done="1"' in status, status
    assert 'data-plots="3"' in status, status
    # busybox, the two shared RUN layers, three COPY layers and the three images
    assert 'data-dag-nodes="9"' in status, status
    assert 'data-errors="[]"' in status, status

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    proc = chromium(
        "--hide-scrollbars",
        "--window-size=1400,2200",
        f"--screenshot={shot}",
        page.as_uri(),
        profile=tmp_path / "profile-shot",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_bench_deps_and_base_changes(busybox_store: Cli, tmp_path: Path, store_path: Path) -> None:
    cli = busybox_store
    specs = write_fleet(tmp_path)
    before = tree_state(specs)
    names = "SELECT name, manifest FROM images ORDER BY name"
    stored = sqlite3.connect(store_path / "index.db").execute(names).fetchall()
    out = tmp_path / "deps.json"
    cli("bench", "--change", "deps", "--apps", "one", "--rounds", "1", "--json", str(out))
    (change,) = [p for p in json.loads(out.read_text())["phases"] if p["name"] == "change"]
    # app one has no RUN step of its own: the one of image.tools, which two shares, changes
    assert change["changed"] == "fleet.hcl:10"
    (r,) = change["rounds"]
    assert r["layers_rebuilt"] == 3 and r["apps_rebuilt"] == ["app.one", "app.two"]
    out = tmp_path / "base.json"
    cli("bench", "--change", "base", "--apps", "three", "--rounds", "1", "--json", str(out))
    (change,) = [p for p in json.loads(out.read_text())["phases"] if p["name"] == "change"]
    assert change["changed"] == "base busybox:latest"
    (r,) = change["rounds"]
    assert r["layers_rebuilt"] == 5 and r["apps_rebuilt"] == ["app.one", "app.three", "app.two"]
    assert tree_state(specs) == before
    assert sqlite3.connect(store_path / "index.db").execute(names).fetchall() == stored
