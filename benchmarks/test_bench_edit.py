"""The developer's loop (issue 19): one source file of one app edited, then ``pipeline
build APP``; and start-up (``pipeline --version``, ``pipeline plan`` on a one-app
fleet). Each round is the real CLI in a child process. The comparison with ``docker
build`` of the same app, ``--watch`` and the 1,000-app figures are in
``python -m benchmarks.edit_loop`` (docs/benchmarks.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import harness
from benchmarks.conftest import SIZES, Fleets, Sizes, case_id, reset_sources
from benchmarks.workload import Shape, change_source, generate

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("apps", SIZES.apps, ids=case_id)
def test_edit_loop_build_one_app(
    benchmark: Any, fleets: Fleets, fresh_store: Any, sizes: Sizes, apps: int, tmp_path: Path
) -> None:
    fleet = fleets[apps]
    reset_sources(fleet)
    store = fresh_store()
    harness.build_all(store, fleet.specs, tmp_path / "cold.json", sizes.jobs)
    app = fleet.apps[len(fleet.apps) // 2]
    revision = iter(range(1, 1_000_000))

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        change_source(fleet, app, revision=next(revision))
        return (), {}

    def build() -> harness.Run:
        return harness.pipeline(
            store, "build", app, "--specs", str(fleet.specs), "--progress", "quiet"
        )

    run = benchmark.pedantic(build, setup=setup, rounds=max(3, sizes.rounds), iterations=1)
    reset_sources(fleet)
    assert "1 built" in run.stdout  # exactly the edited app's source layer
    benchmark.extra_info.update({"apps": apps, "peak_rss": run.peak_rss})


@pytest.mark.parametrize("command", ["version", "plan"])
def test_startup(benchmark: Any, fresh_store: Any, command: str, tmp_path: Path) -> None:
    store = fresh_store()
    one = generate(tmp_path / "one", Shape(apps=1, dep_sets=1, dep_mb=0, system_mb=0, files=1))
    script = str(Path(sys.executable).with_name("pipeline"))
    args = ["--version"] if command == "version" else ["plan", "--specs", str(one.specs)]
    argv = [script, "--store", str(store), *args]
    run = benchmark.pedantic(
        lambda: harness.run_with_rusage(argv, env=harness.pipeline_env()),
        rounds=5,
        iterations=1,
        warmup_rounds=1,
    )
    assert run.stdout.strip()
    benchmark.extra_info.update({"command": command, "peak_rss": run.peak_rss})
