"""Differential Dockerfile suite: every case of tests/cases/differential/ is built by
pipeline and by BuildKit (a private Debian dockerd 20.10) from byte-identical busybox
layers, and the two images are compared path by path and config field by field (see
tests/oracle.py); cases BuildKit 20.10 cannot build are checked against written-out
expectations (tests/written.py). Case file format: tests/differential.py.

A case marked ``pending`` is an expected failure that must still fail: once pipeline
gives the image, the test fails and asks for the mark to be removed.

All builds happen once, in the module fixture: BuildKit builds two cases at a time, then
the daemon is stopped; pipeline builds every case in one ``build-all``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import oracle, written
from tests.differential import (
    BASE,
    Built,
    Case,
    build_with_buildkit,
    build_with_pipeline,
    craft_base,
    load_bases,
    load_cases,
    make_context,
    pipeline_ok,
    scan_and_remove,
    verdict,
)

pytestmark = [pytest.mark.slow, pytest.mark.root]

CASES = load_cases()
BASES = load_bases()


@dataclass
class Suite:
    broken: str | None = None
    buildkit: dict[str, Built] = field(default_factory=dict)
    pipeline: dict[str, Built] = field(default_factory=dict)
    base_tree: dict[str, oracle.Entry] = field(default_factory=dict)
    base_configs: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    imported_bases: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """Each base's config as pipeline stored it on import (``pipeline inspect``)."""


def _prepare_bases(daemon: oracle.Dockerd, store: Path, busybox_tar: Path, work: Path) -> Suite:
    """busybox:latest and the crafted bases in both tools, checked byte-identical."""
    suite = Suite()
    pipeline_ok(store, "import", str(busybox_tar), "--tag", BASE)
    archive = work / "busybox.docker.tar"
    pipeline_ok(store, "export", BASE, "-o", str(archive), "--format", "docker-archive")
    layout = work / "busybox.oci"
    pipeline_ok(store, "export", BASE, "-o", str(layout), "--format", "oci")
    rootfs = oracle.unpack_oci_layout(layout, "latest", work / "bb")
    suite.base_tree = scan_and_remove(rootfs, work / "bb")
    archives = {BASE: archive}
    for name, spec in BASES.items():
        archives[name] = work / f"base-{len(archives)}.tar"
        craft_base(archive, name, spec.changes, archives[name])
        pipeline_ok(store, "import", str(archives[name]), "--tag", name)
    for name, path in archives.items():
        suite.imported_bases[name] = json.loads(pipeline_ok(store, "inspect", name))["config"]
        daemon.docker("load", "-q", "-i", str(path))
        (config,) = oracle.docker_archive_configs(path).values()
        suite.base_configs[name] = config
        docker_id = daemon.docker("image", "inspect", "-f", "{{.Id}}", name).strip()
        want = oracle.docker_archive_digest(path)
        if docker_id != want:
            raise AssertionError(f"{name}: docker loaded config {docker_id}, archive has {want}")
    return suite


def _build_everything(busybox_tar: Path, work: Path, cases: list[Case]) -> Suite:
    store = work / "store"
    started = time.perf_counter()
    daemon = oracle.Dockerd()
    try:
        try:
            daemon.start()
        except oracle.OracleUnavailable as exc:
            return Suite(broken=str(exc))
        suite = _prepare_bases(daemon, store, busybox_tar, work)
        contexts = {c.name: make_context(c, work / "ctx" / c.app) for c in cases}
        suite.seconds["setup"] = time.perf_counter() - started
        t = time.perf_counter()
        suite.buildkit = build_with_buildkit(daemon, cases, contexts, work / "buildkit")
        suite.seconds["buildkit"] = time.perf_counter() - t
    finally:
        daemon.stop()
    t = time.perf_counter()
    suite.pipeline = build_with_pipeline(cases, contexts, store, work / "pipeline")
    suite.seconds["pipeline"] = time.perf_counter() - t
    return suite


def _selected(request: pytest.FixtureRequest) -> list[Case]:
    """The cases this session runs (all of them unless ``-k`` deselected some)."""
    wanted = set()
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("case") if callspec else None
        if isinstance(case, Case):
            wanted.add(case.name)
        elif item.name == "test_timings":
            return CASES
    return [c for c in CASES if c.name in wanted]


@pytest.fixture(scope="module")
def suite(
    busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Suite]:
    """Every build of both tools for the selected cases, done once; ``broken`` says why
    the suite cannot run. The work directory (store, contexts, archives) is removed
    afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root: dockerd, pipeline's sandbox and umoci unpack with owners")
    missing = [t for t in ("dockerd", "skopeo", "umoci", oracle.DOCKER_CLI) if not shutil.which(t)]
    if missing:
        yield Suite(broken=f"missing tools: {', '.join(missing)} (bash .ci/setup installs them)")
        return
    work = tmp_path_factory.mktemp("differential")
    try:
        try:
            suite = _build_everything(busybox_tar, work, _selected(request))
        except (oracle.CommandError, AssertionError, OSError, subprocess.TimeoutExpired) as exc:
            suite = Suite(broken=f"{type(exc).__name__}: {exc}")
        yield suite
    finally:
        oracle.remove_tree(work)


def _differences(case: Case, suite: Suite) -> list[str]:
    """The case's differences; raises AssertionError when the case itself is wrong
    (BuildKit refuses a case it should build, or written facts BuildKit contradicts)."""
    mine = suite.pipeline[case.name]
    theirs = suite.buildkit.get(case.name)
    expect = case.expect or {}
    if theirs is not None and theirs.error is not None and not case.fails:
        raise AssertionError(f"{case.name}: BuildKit failed to build the case: {theirs.error}")
    if case.fails:
        assert theirs is not None and theirs.error is not None, f"{case.name}: BuildKit built it"
        if mine.error is None:
            return ["pipeline built it; BuildKit refuses it"]
        return written.check_error(mine.error, case.error) if case.error else []
    if "error" in expect:
        return written.check_error(mine.error, expect["error"])
    if case.oracle == "written":
        base = expect.get("base", BASE)
        base_tree = written.SCRATCH_TREE if base == "scratch" else suite.base_tree
        base_config = None if base == "scratch" else suite.base_configs[base]
        if theirs is not None:
            assert theirs.tree is not None and theirs.config is not None
            wrong = written.check(
                theirs.tree, theirs.config, base_tree, base_config, expect,
                "buildkit-equivalent",
            )  # fmt: skip
            if wrong:
                raise AssertionError(
                    f"{case.name}: the written facts disagree with BuildKit's build of"
                    f" {case.equivalent}:\n" + "\n".join(wrong)
                )
    if mine.error is not None:
        return [f"pipeline: {mine.error}"]
    assert mine.tree is not None and mine.config is not None
    tree = mine.tree
    lines = []
    if theirs is not None:
        assert theirs.tree is not None and theirs.config is not None
        names = ("buildkit", "pipeline")
        lines += oracle.diff_trees(theirs.tree, tree, names)
        lines += oracle.diff_configs(
            oracle.config_facts(theirs.config), oracle.config_facts(mine.config), names
        )
    if case.oracle == "written":
        lines += written.check(tree, mine.config, base_tree, base_config, expect, "pipeline")
    return lines


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, suite: Suite) -> None:
    if suite.broken:
        pytest.fail(f"the differential suite cannot run: {suite.broken}")
    outcome, message = verdict(case, _differences(case, suite))
    if outcome == "xfail":
        pytest.xfail(message)
    if outcome == "fail":
        pytest.fail(message, pytrace=False)


@pytest.mark.parametrize("name", sorted(BASES))
def test_base_imported_unchanged(name: str, suite: Suite) -> None:
    """pipeline keeps a crafted base's config as docker loaded it (same config facts),
    so the cases built on it start from the same base in both tools."""
    if suite.broken:
        pytest.fail(f"the differential suite cannot run: {suite.broken}")
    lines = oracle.diff_configs(
        oracle.config_facts(suite.base_configs[name]),
        oracle.config_facts(suite.imported_bases[name]),
        ("docker load", "pipeline import"),
    )
    outcome, message = verdict(BASES[name], lines)
    if outcome == "xfail":
        pytest.xfail(message)
    if outcome == "fail":
        pytest.fail(message, pytrace=False)


def test_timings(suite: Suite) -> None:
    """Not a check of speed: records where the suite's time goes (shown with -rA)."""
    if suite.broken:
        pytest.fail(f"the differential suite cannot run: {suite.broken}")
    print({k: round(v, 1) for k, v in suite.seconds.items()})
    assert set(suite.pipeline) == {c.name for c in CASES}
    assert set(suite.buildkit) == {c.name for c in CASES if c.buildkit_dockerfile is not None}
