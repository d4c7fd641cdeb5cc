"""Fixtures for the benchmark suite: sizes from the environment, generated fleets, a
busybox base tarball and fresh stores. Everything runs the real CLI in a child
process (``python -m pipeline``), as a user would.

Sizes (environment variables; the defaults are a smoke run of a few seconds):

==================  ============  =====================================
variable            smoke         ``BENCH_FULL=1`` (the issue's fleet)
==================  ============  =====================================
BENCH_APPS          3             10,40   (comma list: one case each)
BENCH_DEP_SETS      2             3
BENCH_DEP_MB        0.5           20
BENCH_SYSTEM_MB     0.25          4
BENCH_FILES         2             5
BENCH_PLAN_APPS     50            1000
BENCH_ROUNDS        1             3
BENCH_JOBS          CPUs          CPUs
==================  ============  =====================================

A variable set explicitly wins over both columns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks import harness
from benchmarks.workload import Fleet, Shape, change_source, generate

SMOKE = {
    "BENCH_APPS": "3",
    "BENCH_DEP_SETS": "2",
    "BENCH_DEP_MB": "0.5",
    "BENCH_SYSTEM_MB": "0.25",
    "BENCH_FILES": "2",
    "BENCH_PLAN_APPS": "50",
    "BENCH_ROUNDS": "1",
}
FULL = {
    "BENCH_APPS": "10,40",
    "BENCH_DEP_SETS": "3",
    "BENCH_DEP_MB": "20",
    "BENCH_SYSTEM_MB": "4",
    "BENCH_FILES": "5",
    "BENCH_PLAN_APPS": "1000",
    "BENCH_ROUNDS": "3",
}


def setting(name: str) -> str:
    defaults = FULL if os.environ.get("BENCH_FULL", "") not in ("", "0") else SMOKE
    return os.environ.get(name) or defaults[name]


@dataclass(frozen=True)
class Sizes:
    apps: tuple[int, ...]
    dep_sets: int
    dep_mb: float
    system_mb: float
    files: int
    plan_apps: int
    rounds: int
    jobs: int

    @classmethod
    def from_env(cls) -> Sizes:
        return cls(
            apps=tuple(int(x) for x in setting("BENCH_APPS").split(",") if x),
            dep_sets=int(setting("BENCH_DEP_SETS")),
            dep_mb=float(setting("BENCH_DEP_MB")),
            system_mb=float(setting("BENCH_SYSTEM_MB")),
            files=int(setting("BENCH_FILES")),
            plan_apps=int(setting("BENCH_PLAN_APPS")),
            rounds=int(setting("BENCH_ROUNDS")),
            jobs=int(os.environ.get("BENCH_JOBS") or os.cpu_count() or 1),
        )

    def shape(self, apps: int) -> Shape:
        return Shape(
            apps=apps,
            dep_sets=self.dep_sets,
            dep_mb=self.dep_mb,
            system_mb=self.system_mb,
            files=self.files,
        )

    @property
    def smoke(self) -> bool:
        return max(self.apps) <= 5 and self.dep_mb <= 1


SIZES = Sizes.from_env()


def case_id(apps: int) -> str:
    return f"{'smoke-' if SIZES.smoke else ''}n{apps}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="builds need root (overlayfs, namespaces, chroot)")
        for item in items:
            if "benchmarks" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    return SIZES


@pytest.fixture(scope="session")
def base_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox base (pipeline's own, from busybox-static) as a rootfs tarball."""
    from pipeline.build import bases

    out = tmp_path_factory.mktemp("base") / "busybox.tar"
    bases.busybox_rootfs_tar(out)
    return out


class Fleets(dict[int, Fleet]):
    """Generated fleets by app count, each made on first use."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self.factory = factory

    def __missing__(self, apps: int) -> Fleet:
        fleet = self[apps] = generate(self.factory.mktemp(f"fleet-{apps}"), SIZES.shape(apps))
        return fleet


@pytest.fixture(scope="session")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> Fleets:
    return Fleets(tmp_path_factory)


@pytest.fixture
def fresh_store(tmp_path: Path, base_tar: Path) -> Any:
    """A function that makes an empty store holding only busybox:latest, returning
    its path (untimed setup; call it once per round)."""
    counter = iter(range(1_000_000))

    def make() -> Path:
        store = tmp_path / f"store-{next(counter)}"
        harness.pipeline(store, "import", str(base_tar), "--tag", "busybox:latest")
        return store

    return make


def reset_sources(fleet: Fleet) -> None:
    change_source(fleet, revision=0)


def record(
    benchmark: Any, fleet: Fleet, report: dict[str, Any], store: Path, base_bytes: int
) -> None:
    """Put the sharing and disk figures of a build into ``benchmark.extra_info``; under
    ``figures``, the same figures ``pipeline bench`` reports for a phase."""
    from pipeline.build.bench import figures

    t = report["totals"]
    store_bytes = harness.tree_bytes(store)["apparent"]
    benchmark.extra_info.update(
        {
            "apps": fleet.shape.apps,
            "dep_sets": fleet.shape.dep_sets,
            "dep_mb": fleet.shape.dep_mb,
            "system_mb": fleet.shape.system_mb,
            "files": fleet.shape.files,
            "unique_nodes": t["unique_nodes"],
            "nodes_built": t["built"],
            "nodes_cached": t["cached"],
            "cache_hit_ratio": t["hit_ratio"],
            "store_bytes": store_bytes,
            "store_growth_bytes": store_bytes - base_bytes,
            "naive_bytes": t["naive_bytes"],
            "unique_bytes": t["unique_bytes"],
            "disk_saved_bytes": t["saved_bytes"],
            "bytes_written": t.get("bytes_written"),
            "generated_unique_bytes": fleet.shape.unique_data_bytes + fleet.shape.source_bytes,
            "figures": figures(report, report["_run"].seconds) if "_run" in report else None,
        }
    )
