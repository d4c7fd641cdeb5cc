"""End to end: real specs, the real sandbox, a real busybox base, checked with umoci and
skopeo. Needs root with overlayfs (CI is root); nothing here is mocked."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Cli, make_cli

pytestmark = pytest.mark.slow

FLEET = """
variable "GREETING" { default = "hello" }

image "base" {
  from = "busybox:latest"
  run {
    command = "mkdir -p /opt/shared && echo shared > /opt/shared/base.txt && rm /bin/vi"
  }
  env { LANG = "C.UTF-8" }
}

image "deps_a" {
  from = image.base
  run { command = "mkdir -p /opt/deps && seq 1 20000 > /opt/deps/a.txt" }
}

image "deps_b" {
  from = image.base
  run { command = "mkdir -p /opt/deps && seq 1 30000 > /opt/deps/b.txt" }
}

app "one" {
  from       = image.deps_a
  source     = "src/one"
  workdir    = "/srv"
  env        = { APP = "one", GREETING = var.GREETING }
  entrypoint = ["/bin/sh", "/srv/start.sh"]
  tags       = ["acme/one:1"]
}

app "two" {
  inherits = [app.one]
  source   = "src/two"
  env      = { APP = "two" }
  tags     = ["acme/two:1"]
}

app "three" {
  inherits = [app.one]
  from     = image.deps_b
  source   = "src/three"
  env      = { APP = "three" }
  tags     = []
}
"""


def write_fleet(root: Path, fleet: str = FLEET) -> Path:
    specs = root / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    (specs / "fleet.hcl").write_text(fleet)
    for name in ("one", "two", "three"):
        src = specs / "src" / name
        src.mkdir(parents=True, exist_ok=True)
        (src / "start.sh").write_text(f'echo "$GREETING from {name}"\n')
        (src / "data.txt").write_text(f"{name}\n" * 100)
        (src / "debug.log").write_text("not for the image\n")
        (src / ".dockerignore").write_text("*.log\n")
    return specs


def build(cli: Cli, root: Path, *extra: str) -> dict:
    report = root / f"report-{time.monotonic_ns()}.json"
    cli(
        "build-all", "--specs", "specs", "--progress", "plain", "--json-report", str(report), *extra
    )
    return json.loads(report.read_text())


def outcomes(report: dict) -> dict[str, list[str]]:
    by: dict[str, list[str]] = {}
    for node in report["nodes"]:
        by.setdefault(node["outcome"], []).append(node["label"])
    return by


def test_cold_then_noop_then_one_source_change(busybox_store: Cli, tmp_path: Path) -> None:
    specs = write_fleet(tmp_path)
    cold = build(busybox_store, tmp_path)
    t = cold["totals"]
    # base RUN, deps_a, deps_b, three COPY layers: 6 unique layer nodes, all built
    assert (t["unique_nodes"], t["built"], t["cached"], t["failed"]) == (6, 6, 0, 0)
    assert set(cold["images"]) == {"app.one", "app.two", "app.three"}
    assert t["saved_bytes"] > 0 and t["naive_bytes"] > t["unique_bytes"]

    noop = build(busybox_store, tmp_path)
    assert (noop["totals"]["built"], noop["totals"]["cached"]) == (0, 6)
    assert noop["totals"]["hit_ratio"] == 1.0
    assert {i: v["manifest"] for i, v in noop["images"].items()} == {
        i: v["manifest"] for i, v in cold["images"].items()
    }

    (specs / "src" / "two" / "data.txt").write_text("changed\n")
    after = build(busybox_store, tmp_path)
    built = outcomes(after).get("built", [])
    assert built == ["COPY . /srv/"]
    rebuilt = [n for n in after["nodes"] if n["outcome"] == "built"]
    assert [n["apps"] for n in rebuilt] == [["app.two"]]
    assert after["images"]["app.one"] == cold["images"]["app.one"]
    assert after["images"]["app.two"]["manifest"] != cold["images"]["app.two"]["manifest"]

    # an ignored file changing does not rebuild anything
    (specs / "src" / "one" / "debug.log").write_text("noise\n")
    assert build(busybox_store, tmp_path)["totals"]["built"] == 0


def test_export_is_a_real_oci_image(busybox_store: Cli, tmp_path: Path) -> None:
    write_fleet(tmp_path)
    build(busybox_store, tmp_path)
    layout = tmp_path / "one-oci"
    busybox_store("export", "one", "-o", str(layout), "--format", "oci")
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci:{layout}:1"], capture_output=True, text=True, check=True
    )
    info = json.loads(inspect.stdout)
    assert "APP=one" in info["Env"] and "GREETING=hello" in info["Env"]
    assert len(info["Layers"]) == 4  # busybox, base RUN, deps_a, source
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:1", str(bundle)], check=True, capture_output=True
    )
    rootfs = bundle / "rootfs"
    assert (rootfs / "srv" / "start.sh").read_text() == 'echo "$GREETING from one"\n'
    assert (rootfs / "opt" / "shared" / "base.txt").read_text() == "shared\n"
    assert (rootfs / "opt" / "deps" / "a.txt").exists()
    assert not (rootfs / "opt" / "deps" / "b.txt").exists()
    assert not (rootfs / "srv" / "debug.log").exists()  # .dockerignore honoured
    assert not os.path.lexists(rootfs / "bin" / "vi")  # the whiteout removed it
    assert os.path.lexists(rootfs / "bin" / "ls")
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["/bin/sh", "/srv/start.sh"]
    assert config["process"]["cwd"] == "/srv"


def test_archives_are_readable_by_skopeo(busybox_store: Cli, tmp_path: Path) -> None:
    write_fleet(tmp_path)
    build(busybox_store, tmp_path)
    for fmt, transport in (("oci-archive", "oci-archive"), ("docker-archive", "docker-archive")):
        out = tmp_path / f"three.{fmt}.tar"
        busybox_store("export", "three", "-o", str(out), "--format", fmt)
        proc = subprocess.run(
            ["skopeo", "inspect", f"{transport}:{out}"], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert len(json.loads(proc.stdout)["Layers"]) == 4
        copy = tmp_path / f"copy-{fmt}"
        subprocess.run(
            ["skopeo", "copy", f"{transport}:{out}", f"oci:{copy}:x"],
            check=True,
            capture_output=True,
        )


def test_two_fresh_stores_give_identical_digests(busybox_tar: Path, tmp_path: Path) -> None:
    write_fleet(tmp_path)
    digests = []
    for name in ("s1", "s2"):
        cli = make_cli(tmp_path / name, tmp_path)
        cli("import", str(busybox_tar), "--tag", "busybox:latest")
        report = build(cli, tmp_path)
        digests.append({i: v["manifest"] for i, v in report["images"].items()})
    assert digests[0] == digests[1]


def test_a_failed_step_stops_its_descendants_only(busybox_store: Cli, tmp_path: Path) -> None:
    fleet = FLEET.replace(
        'run { command = "mkdir -p /opt/deps && seq 1 30000 > /opt/deps/b.txt" }',
        'run { command = "echo about to fail; exit 7" }',
    )
    write_fleet(tmp_path, fleet)
    report = tmp_path / "r.json"
    proc = busybox_store(
        "build-all", "--progress", "plain", "--json-report", str(report), check=False
    )
    assert proc.returncode == 1
    assert "specs/fleet.hcl:" in proc.stderr
    assert "exit code 7" in proc.stderr and "app.three" in proc.stderr
    assert "about to fail" in proc.stderr
    data = json.loads(report.read_text())
    assert set(data["images"]) == {"app.one", "app.two"}
    assert data["totals"]["failed"] == 1 and data["totals"]["skipped"] == 1
    # the failure poisoned nothing: after fixing the spec, it builds and reuses the rest
    write_fleet(tmp_path)
    again = build(busybox_store, tmp_path)
    assert again["totals"]["failed"] == 0
    assert sorted(outcomes(again)["built"]) == [
        "COPY . /srv/",
        "RUN mkdir -p /opt/deps && seq 1 30000 > /opt/deps/b.txt",
    ]


def test_concurrent_builds_on_one_store_build_each_layer_once(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    write_fleet(tmp_path)
    procs = []
    reports = [tmp_path / "a.json", tmp_path / "b.json"]
    for report in reports:
        env = dict(os.environ, PIPELINE_STORE=str(store_path))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipeline",
                    "build-all",
                    "--progress",
                    "quiet",
                    "--json-report",
                    str(report),
                ],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    a, b = (json.loads(r.read_text()) for r in reports)
    assert a["totals"]["built"] + b["totals"]["built"] == 6
    assert {i: v["manifest"] for i, v in a["images"].items()} == {
        i: v["manifest"] for i, v in b["images"].items()
    }
    assert list((store_path / "tmp").iterdir()) == []


def test_sigkill_mid_build_then_a_clean_rebuild(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    slow = FLEET.replace("seq 1 20000 > /opt/deps/a.txt", "seq 1 20000 > /opt/deps/a.txt; sleep 30")
    write_fleet(tmp_path, slow)
    env = dict(os.environ, PIPELINE_STORE=str(store_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "build-all", "--progress", "plain", "-v"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if "[start] RUN mkdir -p /opt/deps && seq 1 20000" in line or time.monotonic() > deadline:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    # the step's processes died with the builder, no mount leaked
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 30" not in procs.splitlines()
    assert str(store_path) not in Path("/proc/self/mountinfo").read_text()
    write_fleet(tmp_path)
    report = build(busybox_store, tmp_path)
    assert report["totals"]["failed"] == 0
    assert set(report["images"]) == {"app.one", "app.two", "app.three"}
    assert list((store_path / "tmp").iterdir()) == []


def test_a_corrupted_layer_is_detected_on_export(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    write_fleet(tmp_path)
    build(busybox_store, tmp_path)
    inspect = json.loads(busybox_store("inspect", "one").stdout)
    top = inspect["layers"][-1]["diff_id"].split(":")[1]
    (store_path / "layers" / top / "srv" / "data.txt").write_text("tampered\n")
    proc = busybox_store("export", "one", "-o", str(tmp_path / "x"), check=False)
    assert proc.returncode == 1
    assert "corrupted layer" in proc.stderr and top in proc.stderr
    assert not (tmp_path / "x").exists()


def test_bad_spec_fails_located_and_leaves_the_store_alone(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    write_fleet(tmp_path, FLEET.replace('source     = "src/one"', 'sources    = "src/one"'))
    before = sorted(p.name for p in (store_path / "layers").iterdir())
    proc = busybox_store("build-all", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("specs/fleet.hcl:")
    assert "sources" in lines[0]
    assert sorted(p.name for p in (store_path / "layers").iterdir()) == before


def test_copy_never_reads_outside_its_context(busybox_store: Cli, tmp_path: Path) -> None:
    specs = write_fleet(tmp_path)
    os.symlink("/etc", specs / "src" / "one" / "escape")
    fleet = (
        FLEET
        + """
image "sneaky" {
  from = "busybox:latest"
  copy {
    src     = "escape/passwd"
    dest    = "/stolen"
    context = "src/one"
  }
  tags = ["sneaky:1"]
}
"""
    )
    (specs / "fleet.hcl").write_text(fleet)
    proc = busybox_store("build", "sneaky", "--specs", "specs", check=False)
    assert proc.returncode != 0
    assert "escape/passwd" in proc.stderr


def test_history_and_du_tell_the_sharing_story(busybox_store: Cli, tmp_path: Path) -> None:
    write_fleet(tmp_path)
    build(busybox_store, tmp_path)
    history = busybox_store("history", "two").stdout
    assert "COPY . /srv/" in history
    assert "RUN mkdir -p /opt/deps && seq 1 20000" in history
    shared_line = next(line for line in history.splitlines() if "seq 1 20000" in line)
    assert "one" in shared_line  # deps_a is shared with app one
    du = busybox_store("du").stdout
    assert "sharing saves" in du
    images = busybox_store("images").stdout
    assert "acme/one:1" in images and "busybox:latest" in images


def test_prune_keeps_tagged_images_buildable(busybox_store: Cli, tmp_path: Path) -> None:
    write_fleet(tmp_path)
    build(busybox_store, tmp_path)
    busybox_store("prune")
    assert build(busybox_store, tmp_path)["totals"]["built"] == 0


@pytest.fixture(autouse=True)
def _needs_root_and_tools() -> None:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (CI runs as root)")
    for tool in ("umoci", "skopeo", "busybox"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run bash .ci/setup")
