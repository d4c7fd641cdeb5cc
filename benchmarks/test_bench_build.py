"""``build-all`` benchmarks: cold (a fresh store each round), no-op, and after one
source file of one app changed. Every round runs the real CLI in a child process;
``extra_info`` carries the sharing and disk figures of the measured build."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks import harness
from benchmarks.conftest import SIZES, Fleets, Sizes, case_id, record, reset_sources
from benchmarks.workload import Fleet, change_source
from pipeline.build.bench import figures

pytestmark = pytest.mark.slow

# stores left built by the cold benchmark, reused as the start of the no-op and
# one-change benchmarks (built on demand when those run alone)
_BUILT: dict[int, tuple[Path, int]] = {}


def expected_nodes(fleet: Fleet) -> int:
    """System step + dependency sets in use + one source layer per app."""
    return 1 + min(fleet.shape.dep_sets, fleet.shape.apps) + fleet.shape.apps


def _build(store: Path, fleet: Fleet, report: Path, sizes: Sizes) -> dict[str, Any]:
    run, data = harness.build_all(store, fleet.specs, report, sizes.jobs)
    data["_run"] = run
    return data


def built_store(apps: int, fleet: Fleet, fresh_store: Any, sizes: Sizes, tmp: Path) -> Path:
    if apps not in _BUILT or not _BUILT[apps][0].exists():
        reset_sources(fleet)
        store = fresh_store()
        base = harness.tree_bytes(store)["apparent"]
        _build(store, fleet, tmp / "cold.json", sizes)
        _BUILT[apps] = (store, base)
    return _BUILT[apps][0]


@pytest.mark.parametrize("apps", SIZES.apps, ids=case_id)
def test_cold_build_all(
    benchmark: Any, fleets: Fleets, fresh_store: Any, sizes: Sizes, apps: int, tmp_path: Path
) -> None:
    fleet = fleets[apps]
    reset_sources(fleet)
    state: dict[str, Any] = {"round": 0}

    def setup() -> tuple[tuple[Path, Path], dict[str, Any]]:
        old = state.get("store")
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        store = fresh_store()
        state["round"] += 1
        state["store"] = store
        state["base"] = harness.tree_bytes(store)["apparent"]
        os.sync()  # the previous round's write-back is not this round's cost
        return (store, tmp_path / f"cold-{state['round']}.json"), {}

    def target(store: Path, report: Path) -> None:
        state["report"] = _build(store, fleet, report, sizes)

    benchmark.pedantic(target, setup=setup, rounds=sizes.rounds)
    report = state["report"]
    t = report["totals"]
    assert t["failed"] == 0 and t["skipped"] == 0
    assert t["unique_nodes"] == expected_nodes(fleet), "shared steps were not merged"
    assert t["built"] == t["unique_nodes"] and t["cached"] == 0
    record(benchmark, fleet, report, state["store"], state["base"])
    benchmark.extra_info["peak_rss_bytes"] = report["_run"].peak_rss
    benchmark.extra_info["cpu_seconds"] = report["_run"].cpu_seconds
    _BUILT[apps] = (state["store"], state["base"])


@pytest.mark.parametrize("apps", SIZES.apps, ids=case_id)
def test_noop_build_all(
    benchmark: Any, fleets: Fleets, fresh_store: Any, sizes: Sizes, apps: int, tmp_path: Path
) -> None:
    fleet = fleets[apps]
    store = built_store(apps, fleet, fresh_store, sizes, tmp_path)
    reports: list[dict[str, Any]] = []

    def target() -> None:
        reports.append(_build(store, fleet, tmp_path / f"noop-{len(reports)}.json", sizes))

    benchmark.pedantic(target, rounds=sizes.rounds)
    for report in reports:
        t = report["totals"]
        assert t["built"] == 0 and t["cached"] == expected_nodes(fleet)
        assert t["hit_ratio"] == 1.0
    record(benchmark, fleet, reports[-1], store, _BUILT[apps][1])
    benchmark.extra_info["peak_rss_bytes"] = max(r["_run"].peak_rss for r in reports)


@pytest.mark.parametrize("apps", SIZES.apps, ids=case_id)
def test_one_change_build_all(
    benchmark: Any, fleets: Fleets, fresh_store: Any, sizes: Sizes, apps: int, tmp_path: Path
) -> None:
    fleet = fleets[apps]
    store = built_store(apps, fleet, fresh_store, sizes, tmp_path)
    reports: list[dict[str, Any]] = []
    revision = iter(range(1, 1_000_000))

    def setup() -> None:
        change_source(fleet, revision=next(revision))  # new content every round

    def target() -> None:
        reports.append(_build(store, fleet, tmp_path / f"change-{len(reports)}.json", sizes))

    try:
        benchmark.pedantic(target, setup=setup, rounds=sizes.rounds)
    finally:
        reset_sources(fleet)
    for report in reports:
        t = report["totals"]
        rebuilt = [n for n in report["nodes"] if n["outcome"] == "built"]
        assert t["built"] == 1 and t["failed"] == 0, rebuilt
        assert rebuilt[0]["apps"] == [f"app.{fleet.apps[0]}"]
    record(benchmark, fleet, reports[-1], store, _BUILT[apps][1])
    benchmark.extra_info["peak_rss_bytes"] = max(r["_run"].peak_rss for r in reports)


@pytest.mark.parametrize("apps", SIZES.apps[:1], ids=case_id)
def test_pipeline_bench_agrees_with_the_suite(
    fleets: Fleets, fresh_store: Any, sizes: Sizes, apps: int, tmp_path: Path
) -> None:
    """``pipeline bench`` on the generated fleet measures what this suite measures: the
    same cold build and sharing figures, and after a source change of one app one layer
    of that app rebuilt, in about the suite's one-change time."""
    import json

    fleet = fleets[apps]
    reset_sources(fleet)
    app = fleet.apps[0]
    out = tmp_path / "bench.json"
    argv = ["bench", "--specs", str(fleet.specs), "--apps", app, "--rounds", str(sizes.rounds)]
    harness.pipeline(fresh_store(), *argv, "-j", str(sizes.jobs), "--json", str(out), cwd=tmp_path)
    phases = {p["name"]: p for p in json.loads(out.read_text())["phases"]}

    store = fresh_store()
    cold_run, cold = harness.build_all(store, fleet.specs, tmp_path / "cold.json", sizes.jobs)
    change_source(fleet, revision=1)
    try:
        change_run, changed = harness.build_all(
            store, fleet.specs, tmp_path / "change.json", sizes.jobs
        )
    finally:
        reset_sources(fleet)
    suite_cold = figures(cold, cold_run.seconds)
    suite_change = figures(changed, change_run.seconds)

    bench_cold = phases["cold"]["rounds"][0]
    for key in ("layers_rebuilt", "unique_bytes", "naive_bytes", "saved_bytes", "bytes_written"):
        assert bench_cold[key] == suite_cold[key], key
    for r in phases["change"]["rounds"]:
        assert r["layers_rebuilt"] == suite_change["layers_rebuilt"] == 1
        assert r["apps_rebuilt"] == suite_change["apps_rebuilt"] == [f"app.{app}"]
        assert r["saved_bytes"] == suite_change["saved_bytes"]
    a, b = phases["change"]["seconds"], suite_change["seconds"]
    assert abs(a - b) <= 0.5 + 0.5 * max(a, b), (a, b)
