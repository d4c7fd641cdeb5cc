"""The live view of a build on a terminal (the only module that imports ``rich``).

A frame of :class:`pipeline.report.progress.Progress`, redrawn four times a second
whatever happens (so timers and spinners move while a step is silent):

    ⠹ 12.4s [3/17] 2 running, 4 queued; 3 cached, 0 pulled, 1 built, 0 failed
      ⠹ running  8.1s  RUN apt-get update && …               image.python
          │ Get:12 http://deb.debian.org/debian bookworm/main amd64 …
      ⏸ waiting  5.0s  RUN pip install …  waiting for another build (pid 4242)
      · queued   1.2s  COPY apps/web -> /opt/source-code       app.web
      ↓ pull … layer 1/3  ━━━━━━━━━━╺━━━━━━━━━━  45.2 MiB / 287.0 MiB (15%, 9.1 MiB/s)
      image      steps  cached  pulled  built  failed  now
      app.web      3/5       2       0      1       0  RUN pip install …

Steps that finish (built, pulled, failed) and a failure's log are printed above the
view as they happen and stay in the scrollback; the view itself goes at the end,
before the summary.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pipeline.build.executor import BuildResult, NodeResult
from pipeline.graph import BuildGraph, LayerNode
from pipeline.report.progress import (
    Clock,
    Frame,
    Progress,
    clip,
    clock_text,
    counter,
    counts_text,
    failure_text,
    transfer_text,
    waiting_text,
)

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
REFRESH = 4  # frames a second
OUTPUT_LINES = 3  # of each running step
QUEUED_ROWS = 3
TARGET_ROWS = 12
STYLE = {
    "running": ("⠿", "bold cyan"),
    "waiting": ("⏸", "bold yellow"),
    "queued": ("·", "dim"),
}


def spinner(now: float) -> str:
    return SPINNER[int(now * 10) % len(SPINNER)]


def _apps(apps: tuple[str, ...]) -> str:
    if len(apps) <= 2:
        return ", ".join(apps)
    return f"{apps[0]}, +{len(apps) - 1}"


def render(frame: Frame, width: int = 100) -> Group:
    """The view of ``frame`` (pure: the same frame gives the same picture)."""
    parts: list[Any] = []
    head = Text(f"{spinner(frame.elapsed)} {clock_text(frame.elapsed)} ", style="bold")
    head.append(counts_text(frame) if frame.planned else "reading the specs, planning…")
    parts.append(head)
    label_width = max(20, width - 40)
    queued = [s for s in frame.active if s.state == "queued"]
    for step in frame.active:
        if step.state == "queued" and queued.index(step) >= QUEUED_ROWS:
            continue
        mark, style = STYLE.get(step.state, ("?", ""))
        if step.state == "running":
            mark = spinner(frame.now - step.since)
        row = Text(f"  {mark} {step.state:<8}{clock_text(frame.now - step.since):>7}  ")
        row.stylize(style, 0, 13)
        row.append(clip(step.label, label_width))
        if step.state == "waiting":
            row.append(f"  {waiting_text(step.holder)}", style="yellow")
        elif step.apps:
            row.append(f"  {_apps(step.apps)}", style="dim")
        row.truncate(width, overflow="ellipsis")
        parts.append(row)
        if step.state == "running":
            for line in step.lines[-OUTPUT_LINES:]:
                out = Text(f"      │ {line}", style="dim")
                out.truncate(width, overflow="ellipsis")
                parts.append(out)
    if len(queued) > QUEUED_ROWS:
        parts.append(Text(f"    … {len(queued) - QUEUED_ROWS} more queued", style="dim"))
    for t in frame.transfers:
        bar = Table.grid(padding=(0, 1))
        arrow = "↑" if " push" in f" {t.label}" else "↓"
        bar.add_row(
            Text(f"  {arrow} {clip(t.label, 44)}"),
            ProgressBar(total=max(t.total, 1), completed=t.done, width=24),
            Text(transfer_text(t, frame.now).rsplit(": ", 1)[-1]),
        )
        parts.append(bar)
    if frame.targets:
        parts.append(_targets(frame, width))
    return Group(*parts)


def _targets(frame: Frame, width: int) -> Table:
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    table.add_column("  image", no_wrap=True)
    for col in ("steps", "cached", "pulled", "built", "failed"):
        table.add_column(col, justify="right")
    table.add_column("now", no_wrap=True, max_width=max(20, width - 60))
    rows = sorted(frame.targets, key=lambda t: (t.done == t.steps and not t.now, t.done == 0))
    for t in rows[:TARGET_ROWS]:
        state = Text(clip(t.now, 40) if t.now else ("done" if t.done == t.steps else ""))
        if t.failed:
            state = Text("failed", style="red")
        table.add_row(
            Text(f"  {t.name}"),
            f"{t.done}/{t.steps}",
            str(t.cached),
            str(t.pulled),
            str(t.built),
            str(t.failed),
            state,
        )
    if len(rows) > TARGET_ROWS:
        table.add_row(f"  … {len(rows) - TARGET_ROWS} more", "", "", "", "", "", "")
    return table


class LiveReporter:
    """The ``Reporter`` behind ``--progress rich``/``auto`` on a terminal (see the
    module docstring). Starts drawing at the first event; ``end`` (or ``close``)
    stops and restores the terminal."""

    def __init__(self, console: Console, clock: Clock = time.monotonic) -> None:
        self.console = console
        self.progress = Progress(clock)
        self.live = Live(
            console=console,
            refresh_per_second=REFRESH,
            transient=True,
            get_renderable=self._render,
        )
        self._started = False

    @classmethod
    def on(cls, stream: TextIO) -> LiveReporter:
        return cls(Console(file=stream))

    def _render(self) -> Group:
        return render(self.progress.frame(), self.console.width)

    def start(self) -> None:
        """Start drawing now (before ``begin``: the view says it is planning)."""
        self._start()

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self.live.start()

    def _say(self, text: str, style: str = "") -> None:
        self._start()
        self.live.console.print(Text(text, style=style), soft_wrap=True)

    def begin(self, graph: BuildGraph, keys: Sequence[str]) -> None:
        self.progress.begin(graph, keys)
        self._start()

    def node_queued(self, node: LayerNode, apps: frozenset[str]) -> None:
        self.progress.queued(node)

    def node_started(self, node: LayerNode, apps: frozenset[str]) -> None:
        self.progress.started_(node)

    def node_waiting(self, node: LayerNode, holder: int) -> None:
        self.progress.waiting(node, holder)
        self._say(f"{clip(node.label, 60)}: {waiting_text(holder)}", "yellow")

    def node_output(self, node: LayerNode, line: str) -> None:
        self.progress.output(node, line)

    def node_finished(self, node: LayerNode, apps: frozenset[str], result: NodeResult) -> None:
        done = self.progress.finished(node, result)
        if node.kind != "base" and result.outcome in ("built", "pulled", "failed"):
            style = "red" if result.outcome == "failed" else ""
            secs = clock_text(result.seconds)
            names = _apps(tuple(sorted(apps)))
            self._say(
                f"{counter(done, self.progress.total)} {result.outcome:<7} {clip(node.label, 60)}"
                f" {secs}  ({names})",
                style,
            )
        if result.failure is not None:
            self._say(failure_text(result.failure), "red")

    def transfer(self, label: str, done: int, total: int) -> None:
        self.progress.transfer(label, done, total)
        self._start()

    def end(self, result: BuildResult) -> None:
        self.close()

    def close(self) -> None:
        if self._started:
            self.live.stop()
            self._started = False
