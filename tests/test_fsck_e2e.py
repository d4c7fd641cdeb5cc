"""End to end, on real builds from the busybox base: ``pipeline fsck`` finds a flipped
byte in a layer, a missing blob and a truncated index; ``--repair`` then
``build-all`` gives back bit-identical images, rebuilding only what was lost. The
epoch a layer was built with is recorded and used by export and fsck; builds never
stay ``running``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.test_build_e2e import FLEET, write_fleet

pytestmark = pytest.mark.slow

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


def build_with(cli: Cli, root: Path, env: dict[str, str]) -> dict:
    report = root / f"report-{time.monotonic_ns()}.json"
    cli(
        "build-all",
        "--specs",
        "specs",
        "--progress",
        "plain",
        "--json-report",
        str(report),
        env=env,
    )
    return json.loads(report.read_text())


def manifests(report: dict) -> dict[str, str]:
    return {i: v["manifest"] for i, v in report["images"].items()}


def layer_of(cli: Cli, app: str, index: int) -> str:
    return json.loads(cli("inspect", app).stdout)["layers"][index]["diff_id"].split(":")[1]


def test_fsck_finds_damage_and_repair_then_build_restores_identical_images(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    write_fleet(tmp_path)
    first = build_with(busybox_store, tmp_path, EPOCH)
    assert busybox_store("fsck").stdout.startswith("fsck: ok: ")

    # 1. a flipped byte in a layer: deps_a's RUN layer, shared by apps one and two
    deps_a = layer_of(busybox_store, "one", 2)
    victim = store_path / "layers" / deps_a / "opt" / "deps" / "a.txt"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x01
    victim.write_bytes(bytes(data))
    # 2. a missing blob: app three's config
    config = json.loads(busybox_store("inspect", "three").stdout)["config_digest"]
    (store_path / "blobs" / "sha256" / config.split(":")[1]).unlink()
    # 3. a truncated index
    index = store_path / "index.db"
    os.truncate(index, index.stat().st_size // 2)

    check = busybox_store("fsck", check=False)
    assert check.returncode == 1 and "Traceback" not in check.stdout + check.stderr
    out = check.stdout
    assert f"{index}: damaged: " in out, out
    assert f"layers/{deps_a}: corrupt layer: its files no longer give sha256:{deps_a}" in out
    assert f"app.three: its config {config} is missing or damaged" in out, out
    assert f"app.one: its layer sha256:{deps_a} is missing or damaged" in out, out
    assert out.strip().splitlines()[-1].startswith("fsck: ")

    repair = busybox_store("fsck", "--repair")
    assert f"repaired: {store_path}/layers/{deps_a}: removed" in repair.stdout, repair.stdout
    assert "damaged index kept as index.db.damaged-1" in repair.stdout, repair.stdout
    assert busybox_store("fsck").stdout.startswith("fsck: ok: ")
    assert not (store_path / "layers" / deps_a).exists()

    again = build_with(busybox_store, tmp_path, EPOCH)
    assert manifests(again) == manifests(first)
    built = [n["label"] for n in again["nodes"] if n["outcome"] == "built"]
    assert built == ["RUN mkdir -p /opt/deps && seq 1 20000 > /opt/deps/a.txt"], again["nodes"]
    assert busybox_store("fsck").stdout.startswith("fsck: ok: ")
    assert build_with(busybox_store, tmp_path, EPOCH)["totals"]["built"] == 0


def test_fsck_repair_without_a_journal_keeps_what_verifies(
    busybox_store: Cli, store_path: Path, tmp_path: Path, busybox_tar: Path
) -> None:
    """The index lost entirely, and no journal: repair re-adds every layer directory
    that verifies (its epoch found among the candidates), names and keys are gone;
    after re-importing the base, a build gives the same images again."""
    write_fleet(tmp_path)
    first = build_with(busybox_store, tmp_path, EPOCH)
    (store_path / "index.db").write_bytes(b"\0" * 4096)
    (store_path / "index.journal").unlink()
    repair = busybox_store("fsck", "--repair", env=EPOCH)
    assert repair.stdout.count("layer missing from the index (verified; repair adds it back)") == 7
    assert "rebuilt with 7 layers, 0 cache keys, 0 names" in repair.stdout, repair.stdout
    assert busybox_store("fsck").stdout.startswith("fsck: ok: ")
    busybox_store("import", str(busybox_tar), "--tag", "busybox:latest")
    again = build_with(busybox_store, tmp_path, EPOCH)
    assert manifests(again) == manifests(first)
    assert len(list((store_path / "layers").iterdir())) == 7


def test_an_image_built_with_an_epoch_exports_without_it(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    write_fleet(tmp_path)
    report = build_with(busybox_store, tmp_path, EPOCH)
    layout = tmp_path / "one-oci"
    busybox_store("export", "one", "-o", str(layout), "--format", "oci")  # no epoch set
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == report["images"]["app.one"]["manifest"]
    subprocess.run(["skopeo", "inspect", f"oci:{layout}:1"], check=True, capture_output=True)
    db = sqlite3.connect(store_path / "index.db")
    epochs = {e for (e,) in db.execute("SELECT epoch FROM layers")}
    assert 1700000000 in epochs
    # another epoch is another cache key: every RUN/COPY layer is rebuilt
    other = build_with(busybox_store, tmp_path, {"SOURCE_DATE_EPOCH": "1600000000"})
    assert other["totals"]["built"] == 6
    assert manifests(other) != manifests(report)


def builds_table(store: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(store / "index.db")
    return [(s, c) for s, c in db.execute("SELECT status, command FROM builds ORDER BY id")]


def test_builds_never_stay_running(busybox_store: Cli, store_path: Path, tmp_path: Path) -> None:
    broken = FLEET.replace("rm /bin/vi", "rm /bin/vi && exit 3")
    write_fleet(tmp_path, broken)
    failed = busybox_store("build-all", "--specs", "specs", "--progress", "quiet", check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    missing = write_fleet(tmp_path / "m", FLEET.replace("busybox:latest", "nothere:1"))
    gone = busybox_store("build-all", "--specs", str(missing), "--progress", "quiet", check=False)
    assert gone.returncode == 1 and "nothere:1" in gone.stderr, gone.stderr
    assert [s for s, _ in builds_table(store_path)] == ["failed", "failed"]

    env = dict(os.environ, PIPELINE_STORE=str(store_path))
    argv = [sys.executable, "-m", "pipeline", "build-all", "--progress", "plain", "-v"]
    statuses = {}
    for how in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        # a new command each time: a slow step that is not in the cache yet
        write_fleet(tmp_path, FLEET.replace("rm /bin/vi", f"rm /bin/vi; sleep 5; : {how.name}"))
        proc = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            if "[start] RUN mkdir -p /opt/shared" in line or time.monotonic() > deadline:
                break
        time.sleep(0.5)
        proc.send_signal(how)
        rest = proc.communicate(timeout=120)[0]
        statuses[how] = (proc.returncode, rest)
        assert "Traceback" not in rest
    assert statuses[signal.SIGTERM][0] == 143 and "terminated" in statuses[signal.SIGTERM][1]
    assert statuses[signal.SIGINT][0] == 130 and "interrupted" in statuses[signal.SIGINT][1]
    busybox_store("images")  # the next open settles the killed build
    table = [s for s, _ in builds_table(store_path)]
    assert table == ["failed", "failed", "killed", "error", "error"], table
    assert "running" not in table
