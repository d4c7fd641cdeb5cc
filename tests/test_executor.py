"""The scheduler on a fake StepRunner: ordering, the -j limit, failure isolation,
cancellation and exactly-once per key. No sandbox, no root: RUN steps are "run" by a
runner that writes a file into the layer and records what happened."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from pipeline.build.executor import BuildOptions, NullReporter, build
from pipeline.graph import BuildGraph, LayerNode, compile_fleet
from pipeline.model import BaseRef, Copy, Fleet, ImageDef, Mount, Run
from pipeline.sandbox.api import RunResult, RunSpec
from pipeline.store import Store


@dataclass
class FakeRunner:
    """Runs ``work NAME SECONDS [fail|hang]``: sleeps, writes ``/NAME`` into the layer,
    exits 1 for ``fail``; ``hang`` waits until :meth:`stop`."""

    calls: list[str] = field(default_factory=list)
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    active: int = 0
    peak: int = 0
    stops: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: threading.Event = field(default_factory=threading.Event)

    def check_host(self) -> None:
        pass

    def run_step(
        self,
        lowerdirs: Sequence[Path],
        upper: Path,
        work: Path,
        spec: RunSpec,
        on_output: Callable[[str], None] | None = None,
    ) -> RunResult:
        _, name, seconds, *mode = spec.argv[-1].split()
        with self.lock:
            self.calls.append(name)
            self.active += 1
            self.peak = max(self.peak, self.active)
        started = time.monotonic()
        try:
            if mode == ["hang"]:
                self.stopped.wait(30)
                return RunResult(137, ("killed",), 0.0)
            time.sleep(float(seconds))
            (upper / name).write_text(name)
            return RunResult(1 if mode == ["fail"] else 0, (f"{name} done",), 0.0)
        finally:
            with self.lock:
                self.active -= 1
                self.spans[name] = (started, time.monotonic())

    def stop(self) -> int:
        self.stops += 1
        self.stopped.set()
        return 1


def image(name: str, *commands: str, base: str | None = None) -> ImageDef:
    ref = BaseRef("block", base) if base else BaseRef("scratch", "scratch")
    return ImageDef(f"app.{name}", ref, tuple(Run(c) for c in commands), is_app=True)


def compile_(*images: ImageDef) -> BuildGraph:
    fleet = Fleet(images={i.id: i for i in images})

    def no_copy(copy: Copy) -> str:
        raise AssertionError("no COPY here")

    return compile_fleet(fleet, {}, no_copy)


def node_named(graph: BuildGraph, name: str) -> LayerNode:
    return next(n for n in graph.nodes.values() if n.label.split()[2:3] == [name])


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def test_a_child_starts_only_after_its_parent(store: Store) -> None:
    runner = FakeRunner()
    graph = compile_(image("a", "work a1 0.05", "work a2 0.01", "work a3 0"))
    result = build(graph, store, ["app.a"], BuildOptions(jobs=4), None, runner)
    assert runner.calls == ["a1", "a2", "a3"]
    assert runner.spans["a1"][1] <= runner.spans["a2"][0]
    assert runner.spans["a2"][1] <= runner.spans["a3"][0]
    assert result.count("built") == 3 and "app.a" in result.images


def test_no_more_steps_at_once_than_jobs(store: Store) -> None:
    runner = FakeRunner()
    apps = [image(f"x{i}", f"work x{i} 0.1") for i in range(6)]
    graph = compile_(*apps)
    build(graph, store, [a.id for a in apps], BuildOptions(jobs=2), None, runner)
    assert sorted(runner.calls) == [f"x{i}" for i in range(6)]
    assert runner.peak == 2


def test_a_failure_stops_its_descendants_only(store: Store) -> None:
    runner = FakeRunner()
    bad = image("bad", "work b1 0", "work b2 0 fail", "work b3 0")
    good = image("good", "work g1 0.05", "work g2 0")
    graph = compile_(bad, good)
    result = build(graph, store, ["app.bad", "app.good"], BuildOptions(jobs=2), None, runner)
    assert "b3" not in runner.calls
    assert {"g1", "g2"} <= set(runner.calls)
    assert set(result.images) == {"app.good"}
    assert len(result.failures) == 1 and "b2" in result.failures[0].step
    assert result.nodes[node_named(graph, "b3").key].outcome == "skipped"
    assert store.lookup(node_named(graph, "b2").key) is None  # a failed step is not kept


def test_shared_nodes_run_once_and_a_rerun_runs_nothing(store: Store) -> None:
    runner = FakeRunner()
    one = image("one", "work base 0.05", "work one 0")
    two = image("two", "work base 0.05", "work two 0")
    graph = compile_(one, two)
    build(graph, store, ["app.one", "app.two"], BuildOptions(jobs=2), None, runner)
    assert sorted(runner.calls) == ["base", "one", "two"]
    again = FakeRunner()
    result = build(graph, store, ["app.one", "app.two"], BuildOptions(jobs=2), None, again)
    assert again.calls == [] and result.count("cached") == 3


def test_two_builds_on_one_store_build_each_key_once(store: Store) -> None:
    runner = FakeRunner()
    graphs = [
        compile_(image("p", "work shared 0.2", "work p 0")),
        compile_(image("q", "work shared 0.2", "work q 0")),
    ]
    results = []

    def go(graph: BuildGraph, target: str) -> None:
        results.append(build(graph, store, [target], BuildOptions(jobs=2), None, runner))

    threads = [
        threading.Thread(target=go, args=(graphs[0], "app.p")),
        threading.Thread(target=go, args=(graphs[1], "app.q")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(runner.calls) == ["p", "q", "shared"]
    outcomes = sorted(
        r.nodes[node_named(g, "shared").key].outcome
        for r, g in zip(sorted(results, key=lambda r: r.targets), graphs, strict=True)
    )
    assert outcomes == ["built", "cached"]


def test_an_interrupt_kills_running_steps_and_keeps_what_finished(store: Store) -> None:
    runner = FakeRunner()
    graph = compile_(image("a", "work done 0", "work hang 0 hang", "work never 0"))

    class InterruptOnHang(NullReporter):
        def node_started(self, node: LayerNode, apps: frozenset[str]) -> None:
            if "hang" in node.label:
                threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        build(graph, store, ["app.a"], BuildOptions(jobs=2), InterruptOnHang(), runner)
    assert time.monotonic() - started < 5
    assert runner.stops >= 1 and runner.active == 0
    assert "never" not in runner.calls
    assert store.lookup(node_named(graph, "done").key) is not None
    assert store.lookup(node_named(graph, "hang").key) is None
    assert not any((store.root / "tmp").iterdir())  # staging removed
    rerun = FakeRunner()
    rerun.stopped.set()  # "hang" now fails at once: the rerun starts at the killed step
    result = build(graph, store, ["app.a"], BuildOptions(jobs=2), None, rerun)
    assert rerun.calls == ["hang"]
    assert result.nodes[node_named(graph, "done").key].outcome == "cached"


@pytest.mark.root
def test_a_file_edited_after_planning_is_never_stored_under_the_old_key(
    store: Store, tmp_path: Path
) -> None:
    from pipeline.fs.contexthash import ContextHasher

    context = tmp_path / "ctx"
    context.mkdir()
    (context / "app.py").write_text("print('v1')\n")
    app = ImageDef(
        "app.a",
        BaseRef("scratch", "scratch"),
        (Copy(("app.py",), "/srv/app.py", context=str(context)),),
        is_app=True,
    )
    fleet = Fleet(images={app.id: app})

    def digest(copy: Copy) -> str:
        return ContextHasher(None).digest(Path(copy.context), copy.sources, copy.ignore)

    planned = compile_fleet(fleet, {}, digest)
    (context / "app.py").write_text("print('v2 edited meanwhile')\n")
    result = build(planned, store, ["app.a"], BuildOptions(jobs=1), None, FakeRunner())
    assert [f.reason for f in result.failures] == [
        "COPY app.py: changed during the build; run again"
    ]
    (key,) = [k for k, n in planned.nodes.items() if n.kind == "copy"]
    assert store.lookup(key) is None
    replanned = compile_fleet(fleet, {}, digest)
    again = build(replanned, store, ["app.a"], BuildOptions(jobs=1), None, FakeRunner())
    assert again.failures == () and "app.a" in again.images


@dataclass
class EnvRunner(FakeRunner):
    """A FakeRunner that also keeps each step's environment by name."""

    envs: dict[str, dict[str, str]] = field(default_factory=dict)

    def run_step(
        self,
        lowerdirs: Sequence[Path],
        upper: Path,
        work: Path,
        spec: RunSpec,
        on_output: Callable[[str], None] | None = None,
    ) -> RunResult:
        self.envs[spec.argv[-1].split()[1]] = dict(spec.env)
        return super().run_step(lowerdirs, upper, work, spec, on_output)


def test_steps_that_ask_see_one_build_id_per_build(store: Store) -> None:
    """PIPELINE_BUILD_ID: the same in every step that asks for it in one build, another
    in the next build, absent from the others (a cache mount alone, as a Dockerfile's,
    does not get it); never part of a key."""
    cache = (Mount("cache", "/var/cache/x", id="x"),)

    def images(tag: str) -> list[ImageDef]:
        steps = (Run(f"work m{tag} 0", mounts=cache, build_id=True), Run(f"work n{tag} 0"))
        other = (Run(f"work o{tag} 0", build_id=True), Run(f"work p{tag} 0", mounts=cache))
        return [
            ImageDef("app.a", BaseRef("scratch", "scratch"), steps, is_app=True),
            ImageDef("app.b", BaseRef("scratch", "scratch"), other, is_app=True),
        ]

    runner = EnvRunner()
    first, second = BuildOptions(jobs=2), BuildOptions(jobs=2)
    assert first.build_id != second.build_id
    build(compile_(*images("1")), store, ["app.a", "app.b"], first, None, runner)
    build(compile_(*images("2")), store, ["app.a", "app.b"], second, None, runner)
    ids = {name: env.get("PIPELINE_BUILD_ID") for name, env in runner.envs.items()}
    assert ids == {
        "m1": first.build_id,
        "o1": first.build_id,
        "n1": None,
        "p1": None,
        "m2": second.build_id,
        "o2": second.build_id,
        "n2": None,
        "p2": None,
    }
    # the keys do not see it: the same steps without build_id have the same keys
    asking = images("1")
    plain = [replace(i, steps=tuple(replace(st, build_id=False) for st in i.steps)) for i in asking]
    assert plain != asking
    assert set(compile_(*plain).nodes) == set(compile_(*asking).nodes)
