"""Build progress as state, and the line reporters (``plain``, ``quiet``).

:class:`Progress` folds the executor's events into per-step state (queued, running,
waiting on another build's lock, and how each ended), per-target counts and byte
transfers; :meth:`Progress.frame` returns it as frozen values that the renderers (the
plain lines here, the live view in :mod:`pipeline.report.live`) turn into text. One
count for everything: the *steps* of the build (nodes that are not base images), the
same ``N`` as the summary's "N unique nodes".
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from pipeline.build.executor import BuildResult, NodeResult
from pipeline.digest import short
from pipeline.errors import StepFailure, escape
from pipeline.graph import BuildGraph, LayerNode

Clock = Callable[[], float]
FINISHED = ("built", "cached", "pulled", "failed", "skipped")
TAIL = 5  # lines of a running step's output kept for the view


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def clip(text: str, width: int = 72) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def clock_text(seconds: float) -> str:
    """``4.2s`` under a minute, ``1m05s`` above."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


def waiting_text(holder: int) -> str:
    return f"waiting for another build (pid {holder})" if holder else "waiting for another build"


def output_line(line: str) -> str:
    """What a terminal shows of a step's output line: the text after its last carriage
    return (progress bars redraw that way), control characters escaped."""
    return escape(line.rsplit("\r", 1)[-1])


# -- state -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StepView:
    key: str
    label: str
    apps: tuple[str, ...]
    state: str  # pending, queued, running, waiting, or how it finished (FINISHED)
    since: float  # when it entered ``state`` (clock seconds)
    seconds: float = 0.0  # its build time, once finished
    holder: int = 0  # the pid it waits for (state "waiting")
    lines: tuple[str, ...] = ()  # the last lines of its output


@dataclass(frozen=True)
class TransferView:
    label: str
    done: int
    total: int
    since: float

    @property
    def finished(self) -> bool:
        return self.done >= self.total


@dataclass(frozen=True)
class TargetView:
    name: str
    steps: int
    cached: int
    pulled: int
    built: int
    failed: int  # failed or skipped
    now: str  # the label of its running step, if any

    @property
    def done(self) -> int:
        return self.cached + self.pulled + self.built + self.failed


@dataclass(frozen=True)
class Frame:
    """The build at one moment, for rendering."""

    now: float
    elapsed: float
    total: int  # steps
    counts: dict[str, int]  # state -> steps in it
    active: tuple[StepView, ...]  # running and waiting (oldest first), then queued
    targets: tuple[TargetView, ...]
    transfers: tuple[TransferView, ...]  # unfinished ones
    planned: bool = True  # False before ``begin`` (specs read, bases resolved, graph made)

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in FINISHED)


@dataclass
class _Step:
    key: str
    label: str
    apps: tuple[str, ...]
    base: bool
    state: str = "pending"
    since: float = 0.0
    seconds: float = 0.0
    holder: int = 0
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL))


class Progress:
    """Thread-safe state of one build (see the module docstring). Its clock starts when
    it is made (the command's start, before the specs are read), not at ``begin``;
    ``clock`` is injected so tests can render frames at chosen moments."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self._lock = threading.Lock()
        self._steps: dict[str, _Step] = {}
        self._targets: dict[str, tuple[str, ...]] = {}
        self._transfers: dict[str, TransferView] = {}
        self._planned = False

    def begin(self, graph: BuildGraph, keys: Sequence[str]) -> None:
        now = self.clock()
        wanted = set(keys)
        with self._lock:
            self._planned = True
            for key in keys:
                node = graph.node(key)
                apps = tuple(sorted(graph.apps_of(key)))
                self._steps[key] = _Step(key, node.label, apps, node.kind == "base", since=now)
            for target in graph.outputs:
                nodes = graph.images[target].nodes
                if nodes and all(k in wanted for k in nodes):
                    self._targets[target] = tuple(k for k in nodes if graph.node(k).kind != "base")

    def _set(self, node: LayerNode, state: str, **values: object) -> _Step:
        with self._lock:
            step = self._steps.get(node.key)
            if step is None:  # an event for a node begin() did not list
                step = _Step(node.key, node.label, (), node.kind == "base")
                self._steps[node.key] = step
            step.state = state
            step.since = self.clock()
            for name, value in values.items():
                setattr(step, name, value)
            return step

    def queued(self, node: LayerNode) -> None:
        self._set(node, "queued")

    def started_(self, node: LayerNode) -> None:
        self._set(node, "running")

    def waiting(self, node: LayerNode, holder: int) -> None:
        self._set(node, "waiting", holder=holder)

    def output(self, node: LayerNode, line: str) -> None:
        with self._lock:
            step = self._steps.get(node.key)
            if step is not None:
                step.lines.append(output_line(line))
                if step.state == "waiting":  # the lock was taken: it runs now
                    step.state, step.since = "running", self.clock()

    def finished(self, node: LayerNode, result: NodeResult) -> int:
        """Record how ``node`` ended; returns the number of steps finished so far."""
        self._set(node, result.outcome, seconds=result.seconds)
        with self._lock:
            return sum(1 for s in self._steps.values() if not s.base and s.state in FINISHED)

    def transfer(self, label: str, done: int, total: int) -> TransferView:
        with self._lock:
            old = self._transfers.get(label)
            since = old.since if old is not None and done >= old.done else self.clock()
            view = TransferView(label, done, total, since)
            self._transfers[label] = view
            return view

    @property
    def total(self) -> int:
        with self._lock:
            return sum(1 for s in self._steps.values() if not s.base)

    def frame(self) -> Frame:
        now = self.clock()
        with self._lock:
            steps = [s for s in self._steps.values() if not s.base]
            counts: dict[str, int] = {}
            for s in steps:
                counts[s.state] = counts.get(s.state, 0) + 1
            busy = sorted(
                (s for s in steps if s.state in ("running", "waiting")),
                key=lambda s: (s.state != "running", s.since),
            )
            queued = sorted((s for s in steps if s.state == "queued"), key=lambda s: s.since)
            active = tuple(
                StepView(s.key, s.label, s.apps, s.state, s.since, s.seconds, s.holder,
                         tuple(s.lines))
                for s in (*busy, *queued)
            )  # fmt: skip
            targets = tuple(self._target(name, keys) for name, keys in self._targets.items())
            transfers = tuple(t for t in self._transfers.values() if not t.finished)
        return Frame(
            now, now - self.started, len(steps), counts, active, targets, transfers, self._planned
        )

    def _target(self, name: str, keys: tuple[str, ...]) -> TargetView:
        states = [self._steps[k].state for k in keys if k in self._steps]
        now = next(
            (self._steps[k].label for k in keys if self._steps[k].state == "running"),
            next((s for s in ("waiting", "queued") if s in states), ""),
        )
        return TargetView(
            name,
            len(keys),
            states.count("cached"),
            states.count("pulled"),
            states.count("built"),
            states.count("failed") + states.count("skipped"),
            now,
        )


def counter(done: int, total: int) -> str:
    """``[ 7/17]``: steps finished of the build's steps, padded to line up."""
    return f"[{done:>{len(str(total))}}/{total}]"


def counts_text(frame: Frame) -> str:
    """``[7/17] 2 running, 1 waiting, 3 queued; 4 cached, 0 pulled, 3 built, 0 failed``."""
    c = frame.counts
    failed = c.get("failed", 0) + c.get("skipped", 0)
    busy = f"{c.get('running', 0)} running"
    if c.get("waiting"):
        busy += f", {c['waiting']} waiting"
    return (
        f"{counter(frame.done, frame.total)} {busy}, {c.get('queued', 0)} queued;"
        f" {c.get('cached', 0)} cached, {c.get('pulled', 0)} pulled,"
        f" {c.get('built', 0)} built, {failed} failed"
    )


def transfer_text(t: TransferView, now: float) -> str:
    pct = t.done * 100 // t.total if t.total else 100
    rate = ""
    if now - t.since >= 0.5 and t.done:
        rate = f", {human_bytes(t.done / (now - t.since))}/s"
    return f"{t.label}: {human_bytes(t.done)} / {human_bytes(t.total)} ({pct}%{rate})"


def failure_text(failure: StepFailure) -> str:
    """A failed step's message and log, escaped for a terminal."""
    return escape(failure.render(), keep_newlines=True)


# -- the line reporters ------------------------------------------------------------------


class _Lines:
    """Writes whole lines to a stream, one writer at a time."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._lock = threading.Lock()
        self.last = time.monotonic()

    def say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)
            self.last = time.monotonic()


class PlainReporter:
    """``--progress plain``: the same events as the live view, as lines. A step's start
    and end (``[n/N]`` counting steps), waits on another build's lock, a failure's log
    as soon as it fails, transfers at 0/25/50/75/100 %, and every ``heartbeat`` seconds
    without output a line naming what still runs. ``verbose`` adds queued steps and
    every line of step output."""

    def __init__(
        self,
        out: TextIO,
        verbose: bool = False,
        heartbeat: float = 15.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.lines = _Lines(out)
        self.verbose = verbose
        self.heartbeat = heartbeat
        self.progress = Progress(clock)
        self._marks: dict[str, int] = {}
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def begin(self, graph: BuildGraph, keys: Sequence[str]) -> None:
        self.progress.begin(graph, keys)
        frame = self.progress.frame()
        self.lines.say(f"build: {frame.total} steps for {len(frame.targets)} images")
        if self.heartbeat > 0 and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick_loop, daemon=True)
            self._ticker.start()

    def _tick_loop(self) -> None:
        while not self._stop.wait(1.0):
            if time.monotonic() - self.lines.last >= self.heartbeat:
                self.tick()

    def tick(self) -> None:
        """Say what still runs (the heartbeat line), if anything does."""
        frame = self.progress.frame()
        busy = [s for s in frame.active if s.state in ("running", "waiting")]
        if busy:
            what = "; ".join(f"{clip(s.label, 40)} {clock_text(frame.now - s.since)}" for s in busy)
            self.lines.say(f"{counts_text(frame)} | {what}")

    def node_queued(self, node: LayerNode, apps: frozenset[str]) -> None:
        self.progress.queued(node)
        if self.verbose:
            self.lines.say(f"[queue] {clip(node.label)}")

    def node_started(self, node: LayerNode, apps: frozenset[str]) -> None:
        self.progress.started_(node)
        if node.kind != "base":
            self.lines.say(f"[start] {clip(node.label)}  ({', '.join(sorted(apps))})")

    def node_waiting(self, node: LayerNode, holder: int) -> None:
        self.progress.waiting(node, holder)
        self.lines.say(f"[wait ] {clip(node.label, 60)}: {waiting_text(holder)}")

    def node_output(self, node: LayerNode, line: str) -> None:
        self.progress.output(node, line)
        if self.verbose:
            self.lines.say(f"        {short(node.key, 8)} | {escape(line)}")

    def node_finished(self, node: LayerNode, apps: frozenset[str], result: NodeResult) -> None:
        done = self.progress.finished(node, result)
        label = clip(node.label, 60)
        if node.kind == "base":
            self.lines.say(f"[base ] {result.outcome:<7} {label}")
        else:
            names = ", ".join(sorted(apps))
            secs = f" {result.seconds:.1f}s" if result.outcome in ("built", "pulled") else ""
            where = f" on {result.worker}" if result.worker else ""
            total = self.progress.total
            self.lines.say(
                f"{counter(done, total)} {result.outcome:<7} {label}{secs}  ({names}){where}"
            )
        if result.failure is not None:
            self.lines.say(failure_text(result.failure))

    def transfer(self, label: str, done: int, total: int) -> None:
        view = self.progress.transfer(label, done, total)
        mark = 4 if view.finished else (done * 4 // total if total else 0)
        if self._marks.get(label, -1) < mark or (done == 0 and label in self._marks):
            self._marks[label] = mark
            self.lines.say(f"[xfer ] {transfer_text(view, self.progress.clock())}")

    def end(self, result: BuildResult) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()


class QuietReporter:
    """``--progress quiet``: only errors (a failed step's log, as it fails)."""

    def __init__(self, out: TextIO) -> None:
        self.lines = _Lines(out)

    def begin(self, graph: BuildGraph, keys: Sequence[str]) -> None:
        pass

    def node_queued(self, node: LayerNode, apps: frozenset[str]) -> None:
        pass

    def node_started(self, node: LayerNode, apps: frozenset[str]) -> None:
        pass

    def node_waiting(self, node: LayerNode, holder: int) -> None:
        pass

    def node_output(self, node: LayerNode, line: str) -> None:
        pass

    def node_finished(self, node: LayerNode, apps: frozenset[str], result: NodeResult) -> None:
        if result.failure is not None:
            self.lines.say(failure_text(result.failure))

    def transfer(self, label: str, done: int, total: int) -> None:
        pass

    def end(self, result: BuildResult) -> None:
        pass

    def close(self) -> None:
        pass
