"""Fleet-wide dependency factoring (issue 15): a generated fleet of 40 apps whose pip
sets draw 3-8 packages from a pool of 20 locally made wheels (1-20 MiB, some needing
others; see ``benchmarks.wheelfleet``), served by ``--find-links`` (no network).

Measured in one run, each mode on a fresh store (base imported and Python image built
there, outside the timings):

* (a) factoring on (the default): cold ``build-all`` time, package-layer bytes;
* (b) factoring off (``--no-factoring``, one layer per pip set): the same;
* one app adds one package: which layers are built, bytes written.

Package-layer bytes are the unique layers of the apps' images less those of the base
image they share. "Unique packages" is the sum of the wheels' sizes the fleet uses.
Results go to ``benchmarks/results/factoring.json``.

Needs root and a store with ``debian:bookworm`` (``PIPELINE_BENCH_DEBIAN_STORE``;
bootstrapped into a temp store otherwise). ``PIPELINE_BENCH_FACTORING_APPS`` and
``PIPELINE_BENCH_FACTORING_MAX_KIB`` shrink the fleet for a smoke run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness import pipeline
from benchmarks.wheelfleet import WheelShape, package_name, sizes, write_fleet
from pipeline.build.images import load_image
from pipeline.build.pipresolve import read_pip_lock
from pipeline.store import Store

RESULTS = Path(__file__).parent / "results" / "factoring.json"


def _package_bytes(store: Store, apps: list[str]) -> tuple[int, int]:
    """(unique package-layer bytes, naive bytes: summed per app) over ``apps``."""
    base = {d for d, _ in load_image(store, "image.pybase").layers}
    unique: dict[str, int] = {}
    naive = 0
    for app in apps:
        for diff_id, size in load_image(store, app).layers:
            if diff_id not in base:
                unique[diff_id] = size
                naive += size
    return sum(unique.values()), naive


def _build(store: Path, work: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    report = work / f"report-{time.monotonic_ns()}.json"
    started = time.monotonic()
    pipeline(
        store,
        "build-all",
        "--specs",
        "specs",
        "--progress",
        "quiet",
        "-j",
        "2",
        "--json-report",
        str(report),
        *extra,
        cwd=work,
        timeout=3600,
    )
    return time.monotonic() - started, json.loads(report.read_text())


@pytest.mark.benchmark(group="factoring")
def test_factoring_on_vs_off(benchmark: Any, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (overlayfs sandbox)")
    apps = int(os.environ.get("PIPELINE_BENCH_FACTORING_APPS", "40"))
    max_kib = int(os.environ.get("PIPELINE_BENCH_FACTORING_MAX_KIB", str(20 * 1024)))
    shape = WheelShape(apps=apps, min_kib=min(1024, max_kib), max_kib=max_kib)
    shared = os.environ.get("PIPELINE_BENCH_DEBIAN_STORE")
    seed = Path(shared) if shared else tmp_path / "seed"
    if not shared:
        pipeline(seed, "bootstrap", "debian:bookworm", timeout=900)
    debian = tmp_path / "debian.tar"
    pipeline(seed, "export", "debian:bookworm", "-o", str(debian), "--format", "oci-archive")
    work = tmp_path / "fleet"
    sets = write_fleet(work, shape)
    ids = [f"app.app{n:02d}" for n in range(len(sets))]

    def fresh(mode: str) -> Path:
        """A new store with the base and the Python image built (outside the timing)."""
        store = tmp_path / f"store-{mode}"
        pipeline(store, "import", str(debian), "--tag", "debian:bookworm")
        pipeline(store, "build", "pybase", "--specs", "specs", "--progress", "quiet", cwd=work)
        return store

    results: dict[str, Any] = {"shape": shape.__dict__}
    off_store = fresh("off")
    off_seconds, off_report = _build(off_store, work, "--no-factoring")
    off_bytes, off_naive = _package_bytes(Store(off_store), ids)
    store = fresh("on")

    def cold() -> tuple[float, dict[str, Any]]:
        return _build(store, work)

    on_seconds, on_report = benchmark.pedantic(cold, rounds=1, iterations=1)
    on_bytes, on_naive = _package_bytes(Store(store), ids)
    wheel_sizes = sizes(shape)
    used = {p for pkgs in sets for p in pkgs}
    lock = read_pip_lock(work / "specs" / "pipeline.lock")
    used |= {pin.name for r in lock.values() for pin in r.pins}
    wheel_dir = work / "specs" / "wheels"
    unique = sum((wheel_dir / f"{n}-1.0-py3-none-any.whl").stat().st_size for n in sorted(used))
    # one app adds one package it did not have
    hcl = work / "specs" / "apps.hcl"
    first = sets[0]
    extra_pkg = next(package_name(i) for i in range(shape.pool) if package_name(i) not in first)
    old = ", ".join(f'"{p}"' for p in first)
    hcl.write_text(
        hcl.read_text().replace(f"pip    = [{old}]", f'pip    = [{old}, "{extra_pkg}"]', 1)
    )
    add_seconds, add_report = _build(store, work)
    built = [n["label"] for n in add_report["nodes"] if n["outcome"] == "built"]
    off_add_seconds, off_add = _build(off_store, work, "--no-factoring")
    results.update(
        {
            "unique_package_bytes": unique,
            "pool_bytes": sum(wheel_sizes),
            "on": {
                "seconds": on_seconds,
                "package_bytes": on_bytes,
                "naive_bytes": on_naive,
                "totals": on_report["totals"],
            },
            "off": {
                "seconds": off_seconds,
                "package_bytes": off_bytes,
                "naive_bytes": off_naive,
                "totals": off_report["totals"],
            },
            "ratio_on_to_unique": on_bytes / unique,
            "ratio_on_to_off": on_bytes / off_bytes,
            "add_one_package": {
                "app": "app00",
                "package": extra_pkg,
                "seconds": add_seconds,
                "built": built,
                "bytes_written": add_report["totals"]["bytes_written"],
                "off_seconds": off_add_seconds,
                "off_built": [n["label"] for n in off_add["nodes"] if n["outcome"] == "built"],
                "off_bytes_written": off_add["totals"]["bytes_written"],
            },
        }
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    assert on_bytes < off_bytes
