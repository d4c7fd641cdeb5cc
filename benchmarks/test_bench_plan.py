"""``pipeline plan`` on a large generated fleet (BENCH_PLAN_APPS apps, 1,000 in the
full run): wall time per round and the child's peak RSS, in ``extra_info``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import harness
from benchmarks.conftest import SIZES, Sizes
from benchmarks.workload import Shape, generate

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "apps", [SIZES.plan_apps], ids=lambda n: f"{'smoke-' if SIZES.smoke else ''}n{n}"
)
def test_plan(benchmark: Any, sizes: Sizes, apps: int, tmp_path: Path, fresh_store: Any) -> None:
    shape = Shape(apps=apps, dep_sets=10, files=sizes.files)
    fleet = generate(tmp_path / "fleet", shape, dockerfiles=False)
    store = fresh_store()
    args = ("plan", "--specs", str(fleet.specs), "--format", "json")
    # the first plan also fills the store's context digest cache: report it apart
    first = harness.pipeline(store, *args)
    runs: list[harness.Run] = []

    def target() -> None:
        runs.append(harness.pipeline(store, *args))

    benchmark.pedantic(target, rounds=sizes.rounds)
    plan = json.loads(runs[-1].stdout)
    assert plan["summary"]["apps"] == apps
    nodes = [n for n in plan["nodes"] if n["kind"] != "base"]
    assert len(nodes) == 1 + min(shape.dep_sets, apps) + apps
    benchmark.extra_info.update(
        {
            "apps": apps,
            "spec_files": len(list(fleet.specs.glob("*.hcl"))),
            "unique_nodes": len(nodes),
            "peak_rss_bytes": max(r.peak_rss for r in runs),
            "cpu_seconds": min(r.cpu_seconds for r in runs),
            "first_run_seconds": first.seconds,
            "first_run_peak_rss_bytes": first.peak_rss,
        }
    )
