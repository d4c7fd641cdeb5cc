"""Progress output: the plain lines and the quiet mode of a real scheduler run (on a
fake step runner that prints and sleeps), the store's lock wait, transfer lines, and
the live view's frames as text at chosen moments (a fake clock), checked line by line.
The same view under a real terminal is tests/test_live_tty.py."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.build.executor import BuildOptions, NodeResult, build
from pipeline.errors import BuildFailed, StepFailure
from pipeline.graph import BuildGraph, LayerNode
from pipeline.report import end_text, final_line, summary_text
from pipeline.report.live import LiveReporter, render
from pipeline.report.progress import PlainReporter, Progress, QuietReporter, output_line
from pipeline.sandbox.api import RunResult, RunSpec
from pipeline.store import Store
from tests.test_executor import compile_, image

REPO = Path(__file__).resolve().parent.parent


class TalkingRunner:
    """Runs ``say NAME SECONDS [fail]``: prints ``NAME line I`` every 0.05 s for
    SECONDS, writes ``/NAME`` into the layer, exits 1 for ``fail``."""

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
        end = time.monotonic() + float(seconds)
        lines = []
        i = 0
        while time.monotonic() < end:
            i += 1
            lines.append(f"{name} line {i}")
            if on_output is not None:
                on_output(lines[-1])
            time.sleep(0.05)
        (upper / name).write_text(name)
        return RunResult(1 if mode else 0, tuple(lines[-3:]), 0.0)

    def stop(self) -> int:
        return 0


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def fleet() -> tuple[BuildGraph, list[str]]:
    """A shared first step, a failing branch next to a slow one, and a quick one."""
    apps = [
        image("web", "say shared 0.1", "say slow 0.8"),
        image("api", "say shared 0.1", "say broken 0.1 fail"),
        image("cli", "say shared 0.1", "say quick 0"),
    ]
    return compile_(*apps), [a.id for a in apps]


def plain_build(store: Store, verbose: bool = False, jobs: int = 2) -> tuple[str, object]:
    graph, targets = fleet()
    out = io.StringIO()
    rep = PlainReporter(out, verbose=verbose, heartbeat=0)
    result = build(graph, store, targets, BuildOptions(jobs=jobs), rep, TalkingRunner())
    return out.getvalue(), (graph, result)


def test_plain_counts_steps_as_the_summary_does(store: Store) -> None:
    text, (graph, result) = plain_build(store)
    lines = text.splitlines()
    assert lines[0] == "build: 4 steps for 3 images"
    counters = [line.split()[0] for line in lines if line.startswith("[") and "/" in line[:7]]
    assert counters == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert final_line(graph, result).startswith("4 unique nodes: 3 built, 0 cached, 0 pulled")
    # the table has a pulled column, and its counts add up to the same steps
    table = summary_text(graph, result).splitlines()
    assert table[0].split() == ["image", "layers", "cached", "pulled", "built", "time"]


def test_plain_prints_a_failure_as_it_happens(store: Store) -> None:
    text, _ = plain_build(store)
    lines = text.splitlines()
    failed = next(i for i, line in enumerate(lines) if " failed  RUN say broken" in line)
    assert lines[failed + 1].startswith("step 'RUN say broken 0.1 fail' failed (exit code 1)")
    assert lines[failed + 2] == "    | broken line 1"  # its log, at once
    slow_done = next(i for i, line in enumerate(lines) if "built   RUN say slow" in line)
    assert failed < slow_done  # before the slow sibling (still running) finished


def test_plain_shows_starts_and_verbose_shows_queue_and_output(store: Store) -> None:
    text, _ = plain_build(store, verbose=True, jobs=1)
    lines = text.splitlines()
    assert "[start] RUN say slow 0.8  (app.web)" in lines
    assert any(line.startswith("[queue] RUN say quick 0") for line in lines)
    # with one worker, three steps are queued after the shared one; one starts at a time
    queued = [i for i, line in enumerate(lines) if line.startswith("[queue]")]
    starts = [i for i, line in enumerate(lines) if line.startswith("[start]")]
    assert len(queued) == 4 and len(starts) == 4
    assert queued[1] < starts[1] and queued[3] < starts[2]  # all queued before they run
    assert any(line.endswith("| slow line 2") for line in lines)


def test_plain_heartbeat_names_what_runs() -> None:
    graph, _ = fleet()
    now = [100.0]
    out = io.StringIO()
    rep = PlainReporter(out, heartbeat=0, clock=lambda: now[0])
    rep.begin(graph, list(graph.order()))
    slow = next(n for n in graph.nodes.values() if "slow" in n.label)
    rep.node_started(slow, frozenset({"app.web"}))
    now[0] += 45
    rep.tick()
    assert out.getvalue().splitlines()[-1] == (
        "[0/4] 1 running, 0 queued; 0 cached, 0 pulled, 0 built, 0 failed | RUN say slow 0.8 45.0s"
    )


def test_plain_transfer_lines_at_quarters() -> None:
    out = io.StringIO()
    rep = PlainReporter(out, heartbeat=0, clock=lambda: 0.0)
    mib = 1 << 20
    for done in range(0, 288 * mib, 8 * mib):
        rep.transfer("push r/web layer 1/1 abc", min(done, 287 * mib), 287 * mib)
    rep.transfer("push r/web layer 1/1 abc", 287 * mib, 287 * mib)
    assert [line.split(": ", 1)[1] for line in out.getvalue().splitlines()] == [
        "0 B / 287.0 MiB (0%)",
        "72.0 MiB / 287.0 MiB (25%)",
        "144.0 MiB / 287.0 MiB (50%)",
        "216.0 MiB / 287.0 MiB (75%)",
        "287.0 MiB / 287.0 MiB (100%)",
    ]


def test_quiet_prints_only_the_failure_then_the_final_line(store: Store) -> None:
    graph, targets = fleet()
    out = io.StringIO()
    result = build(graph, store, targets, BuildOptions(jobs=2), QuietReporter(out), TalkingRunner())
    assert out.getvalue().splitlines()[0].startswith("step 'RUN say broken 0.1 fail' failed")
    assert all(line.startswith(("step ", "    | ")) for line in out.getvalue().splitlines())
    assert end_text(graph, result, "quiet") == final_line(graph, result)  # no table
    assert end_text(graph, result, "plain") == summary_text(graph, result)
    # the error at the end is short: the log was already shown
    assert str(BuildFailed(result.failures, logs_shown=True)).splitlines() == [
        "step 'RUN say broken 0.1 fail' failed (exit code 1); apps: app.api",
        "1 step(s) failed; their output is above",
    ]


def test_a_build_waiting_for_another_builds_lock_says_so(store: Store, tmp_path: Path) -> None:
    graph = compile_(image("web", "say only 0.1"))
    key = next(k for k in graph.order() if graph.node(k).kind == "run")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pipeline.store import Store\n"
         f"with Store({str(store.root)!r}).key_lock({key!r}):\n"
         "    print('held', flush=True); time.sleep(1.5)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    out = io.StringIO()
    started = time.monotonic()
    seen: list[float] = []

    class Watch(PlainReporter):
        def node_waiting(self, node: LayerNode, pid: int) -> None:
            seen.append(time.monotonic() - started)
            super().node_waiting(node, pid)

    result = build(
        graph, store, ["app.web"], BuildOptions(), Watch(out, heartbeat=0), TalkingRunner()
    )
    holder.wait(10)
    assert result.count("built") == 1
    assert f"[wait ] RUN say only 0.1: waiting for another build (pid {holder.pid})" in (
        out.getvalue().splitlines()
    )
    assert seen and seen[0] < 1.0  # said at once, not when the lock came free


def test_key_lock_records_its_holder(store: Store) -> None:
    with store.key_lock("sha256:" + "a" * 64):
        text = (store.root / "locks" / ("a" * 64 + ".lock")).read_text()
    assert text == f"{os.getpid()}\n"


def test_output_line_keeps_what_a_terminal_shows() -> None:
    assert output_line("Downloading 10%\rDownloading 55%\r") == ""
    assert output_line("Downloading 10%\rDownloading 55%") == "Downloading 55%"
    assert output_line("bell\x07 here") == "bell\\x07 here"


# -- the live view, frame by frame --------------------------------------------------


def screen(progress: Progress, width: int = 100) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
    console.print(render(progress.frame(), width))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def node(graph: BuildGraph, word: str) -> LayerNode:
    return next(n for n in graph.nodes.values() if word in n.label)


def test_live_frames_at_key_moments() -> None:
    graph, _ = fleet()
    now = [1000.0]
    p = Progress(lambda: now[0])
    p.begin(graph, list(graph.order()))
    shared = node(graph, "shared")
    p.queued(shared)
    now[0] += 0.2
    p.started_(shared)
    for i in range(1, 6):
        p.output(shared, f"Get:{i} http://deb.debian.org/debian bookworm/main pkg{i}")
    now[0] += 2.8
    # 3 s in: one step running with its last output lines, the rest pending
    assert (
        screen(p)
        == """\
⠋ 3.0s [0/4] 1 running, 0 queued; 0 cached, 0 pulled, 0 built, 0 failed
  ⠧ running    2.8s  RUN say shared 0.1  app.api, +2
      │ Get:3 http://deb.debian.org/debian bookworm/main pkg3
      │ Get:4 http://deb.debian.org/debian bookworm/main pkg4
      │ Get:5 http://deb.debian.org/debian bookworm/main pkg5
  image    steps  cached  pulled  built  failed  now
  app.web    0/2       0       0      0       0  RUN say shared 0.1
  app.api    0/2       0       0      0       0  RUN say shared 0.1
  app.cli    0/2       0       0      0       0  RUN say shared 0.1"""
    )
    now[0] += 1.0  # a second later, with no event at all: the timers moved
    later = screen(p)
    assert " 4.0s [0/4]" in later and "running    3.8s" in later, later
    p.finished(shared, NodeResult(shared.key, "built", seconds=3.8))
    for word in ("slow", "broken", "quick"):
        p.queued(node(graph, word))
    p.started_(node(graph, "slow"))
    p.waiting(node(graph, "broken"), 4242)
    now[0] += 26.0
    # 30 s in: running, waiting on another build's lock, and queued look different
    assert (
        screen(p)
        == """\
⠋ 30.0s [1/4] 1 running, 1 waiting, 1 queued; 0 cached, 0 pulled, 1 built, 0 failed
  ⠋ running   26.0s  RUN say slow 0.8  app.web
  ⏸ waiting   26.0s  RUN say broken 0.1 fail  waiting for another build (pid 4242)
  · queued    26.0s  RUN say quick 0  app.cli
  image    steps  cached  pulled  built  failed  now
  app.web    1/2       0       0      1       0  RUN say slow 0.8
  app.api    1/2       0       0      1       0  waiting
  app.cli    1/2       0       0      1       0  queued"""
    )
    failure = StepFailure(("app.api",), "RUN say broken 0.1 fail", None, 1, ("oops",))
    p.finished(node(graph, "broken"), NodeResult("k", "failed", failure=failure))
    p.finished(node(graph, "quick"), NodeResult("k", "pulled", seconds=0.5))
    p.transfer("pull cache entry cache-0123", 45 << 20, 287 << 20)
    now[0] += 2.0
    p.transfer("pull cache entry cache-0123", 90 << 20, 287 << 20)
    assert (
        screen(p)
        == """\
⠋ 32.0s [3/4] 1 running, 0 queued; 0 cached, 1 pulled, 1 built, 1 failed
  ⠋ running   28.0s  RUN say slow 0.8  app.web
  ↓ pull cache entry cache-0123 ━━━━━━━╸                 90.0 MiB / 287.0 MiB (31%, 45.0 MiB/s)
  image    steps  cached  pulled  built  failed  now
  app.web    1/2       0       0      1       0  RUN say slow 0.8
  app.api    2/2       0       0      1       1  failed
  app.cli    2/2       0       1      1       0  done"""
    )


def test_live_reporter_prints_finished_steps_and_failure_logs_above_the_view(
    store: Store,
) -> None:
    graph, targets = fleet()
    buf = io.StringIO()
    console = Console(file=buf, width=100, color_system=None, force_terminal=False)
    result = build(
        graph, store, targets, BuildOptions(jobs=2), LiveReporter(console), TalkingRunner()
    )
    text = buf.getvalue()
    assert result.count("failed") == 1
    assert "[1/4] built   RUN say shared 0.1" in text
    assert "step 'RUN say broken 0.1 fail' failed (exit code 1); apps: app.api" in text
    assert text.index("    | broken line 1") < text.index("built   RUN say slow 0.8")


def test_live_view_refreshes_at_least_once_a_second() -> None:
    """Rendered by rich's own refresh thread while nothing happens: each second shows
    a different clock."""
    graph, _ = fleet()
    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=True, color_system=None)
    rep = LiveReporter(console)
    rep.begin(graph, list(graph.order()))
    rep.node_started(node(graph, "shared"), frozenset())
    seen = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            seen.append(buf.getvalue().count("running "))

    thread = threading.Thread(target=sample)
    thread.start()
    time.sleep(3.2)
    stop.set()
    thread.join()
    rep.close()
    # at least one redraw in every second of silence (each redraw repeats the row)
    per_second = [seen[i + 4] - seen[i] for i in range(0, len(seen) - 4, 4)]
    assert per_second and all(n >= 1 for n in per_second), seen
