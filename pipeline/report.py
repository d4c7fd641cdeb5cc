"""Rendering: plans (text, json, dot, mermaid), build progress and summaries.

Renderers are pure functions returning text. The reporters write to the stream they
are given (plain lines) or drive a rich live view; the executor talks to them only
through the ``Reporter`` protocol.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from pipeline.build.executor import BuildResult, NodeResult, NullReporter, Reporter
from pipeline.build.summary import build_totals, summary_rows
from pipeline.digest import short
from pipeline.graph import BuildGraph, ImagePlan, LayerNode


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _clip(text: str, width: int = 72) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- plans ---------------------------------------------------------------------------


def plan_json(graph: BuildGraph, volatile: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A stable JSON view of the graph (used by golden tests); ``volatile``: node key ->
    why its key changes between runs (see ``build.volatile``)."""
    used = graph.closure(graph.outputs)
    nodes = []
    for key in graph.order():
        if key not in used:
            continue
        n = graph.node(key)
        entry: dict[str, Any] = {
            "key": key,
            "kind": n.kind,
            "parent": n.parent,
            "label": n.label,
            "apps": sorted(graph.apps_of(key)),
        }
        if n.kind == "base":
            entry["resolved"] = n.resolved
        if volatile and key in volatile:
            entry["volatile"] = volatile[key]
        if n.copy_from:
            entry["copy_from"] = n.copy_from
        if n.inputs:
            entry["inputs"] = list(n.inputs)
        nodes.append(entry)
    images = {
        i: {
            "nodes": list(graph.images[i].nodes),
            "tags": list(graph.images[i].tags),
            "config": graph.images[i].config.to_oci(),
            "packages": [
                {"key": p.key, "pins": list(p.pins), "reason": p.reason, "detail": p.detail}
                for p in graph.images[i].packages
            ],
        }
        for i in graph.outputs
    }
    s = graph.summary()
    summary = {"apps": s.apps, "steps": s.steps, "unique": s.unique, "shared": s.shared}
    pending = sorted(" ".join(p.packages) for p in graph.pending_pip.values())
    return {"nodes": nodes, "images": images, "summary": summary, "pip_unresolved": pending}


def plan_text(graph: BuildGraph, volatile: Mapping[str, str] | None = None) -> str:
    """Each output's chain as a tree; shared nodes marked with who shares them."""
    lines: list[str] = []
    sharers: dict[str, list[str]] = {}  # key -> sorted apps, computed once per node
    for image_id in graph.outputs:
        plan = graph.images[image_id]
        tags = f"  [{', '.join(plan.tags)}]" if plan.tags else ""
        lines.append(f"{image_id}{tags}")
        for depth, key in enumerate(plan.nodes):
            node = graph.node(key)
            apps = sharers.get(key)
            if apps is None:
                apps = sharers[key] = sorted(graph.apps_of(key))
            mark = ""
            if len(apps) > 1:
                others = [a for a in apps[:5] if a != image_id][:4]
                rest = len(apps) - 1 - len(others)
                mark = f"  (shared with {', '.join(others)}{f', +{rest}' if rest else ''})"
            if node.kind == "base" and not node.resolved:
                mark += "  (unresolved)"
            if volatile and key in volatile:
                mark += f"  (volatile: {volatile[key]})"
            mark += "".join(
                f"  (chained: {p.detail})"
                for p in plan.packages
                if p.key == key and p.reason == "chained"
            )
            last = depth == len(plan.nodes) - 1
            branch = "└─ " if last else "├─ "
            lines.append(f"  {branch}{short(key)} {_clip(node.label)}{mark}")
            if node.inputs:
                lines.extend(_stack_lines(graph, plan, node.inputs, "   " if last else "│  "))
        lines.append("")
    for item in sorted(graph.pending_pip.values(), key=lambda p: p.packages):
        lines.append(
            f"pip {' '.join(item.packages)}: not resolved in its environment yet, so one "
            "layer for now; the next build resolves it, locks it and factors it"
        )
    lines.append(str(graph.summary()))
    return "\n".join(lines)


def _stack_lines(
    graph: BuildGraph, plan: ImagePlan, inputs: tuple[str, ...], indent: str
) -> list[str]:
    """The package layers of a stack: who shares each one, and why pins share a layer."""
    why = {p.key: p for p in plan.packages}
    out = []
    for i, key in enumerate(inputs):
        apps = sorted(graph.apps_of(key))
        layer = why.get(key)
        note = f"  [{layer.reason}: {layer.detail}]" if layer and layer.reason != "own" else ""
        branch = "└─ " if i == len(inputs) - 1 else "├─ "
        shared = f"used by {len(apps)} apps" if len(apps) > 1 else f"only {apps[0]}"
        label = _clip(graph.node(key).label.removeprefix("RUN "))
        out.append(f"  {indent}{branch}{short(key)} {label}  ({shared}){note}")
    return out


def plan_dot(graph: BuildGraph) -> str:
    used = graph.closure(graph.outputs)
    out = ["digraph pipeline {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];"]
    for key in graph.order():
        if key in used:
            node = graph.node(key)
            label = json.dumps(f"{short(key)}\\n{_clip(node.label, 40)}")
            shared = ", style=bold" if len(graph.apps_of(key)) > 1 else ""
            out.append(f'  "{short(key)}" [label={label}{shared}];')
    for a, b in graph.edges():
        if a in used and b in used:
            out.append(f'  "{short(a)}" -> "{short(b)}";')
    for image_id in graph.outputs:
        top = graph.images[image_id].top
        if top:
            out.append(f'  "{image_id}" [shape=ellipse];')
            out.append(f'  "{short(top)}" -> "{image_id}";')
    out.append("}")
    return "\n".join(out)


def plan_mermaid(graph: BuildGraph) -> str:
    used = graph.closure(graph.outputs)
    out = ["graph LR"]
    for key in graph.order():
        if key in used:
            label = _clip(graph.node(key).label, 40).replace('"', "'")
            out.append(f'  n{short(key)}["{label}"]')
    for a, b in graph.edges():
        if a in used and b in used:
            out.append(f"  n{short(a)} --> n{short(b)}")
    for i, image_id in enumerate(graph.outputs):
        top = graph.images[image_id].top
        if top:
            out.append(f'  o{i}(["{image_id}"])')
            out.append(f"  n{short(top)} --> o{i}")
    return "\n".join(out)


# -- build summaries -----------------------------------------------------------------


BUILD_REPORT_SCHEMA = "pipeline-build-report"
BUILD_REPORT_VERSION = 1  # docs/ci.md: bumped only when a field changes meaning or goes away


def build_json(graph: BuildGraph, result: BuildResult) -> dict[str, Any]:
    """Totals, per-image rows and per-node outcomes, for scripts and benchmarks: the
    ``--json-report`` schema of docs/ci.md."""
    nodes = []
    for key, r in result.nodes.items():
        node = graph.node(key)
        if node.kind == "base":
            continue
        nodes.append(
            {
                "key": key,
                "label": node.label,
                "kind": node.kind,
                "apps": sorted(graph.apps_of(key)),
                "outcome": r.outcome,
                "seconds": round(r.seconds, 3),
                "size": r.size,
                **({"worker": r.worker} if r.worker else {}),
            }
        )
    images = {
        i: {"manifest": img.manifest, "names": list(img.names)} for i, img in result.images.items()
    }
    rows = [
        {"image": n, "layers": la, "cached": c, "built": b, "seconds": round(s, 3)}
        for n, la, c, b, s in summary_rows(graph, result)
    ]
    return {
        "schema": BUILD_REPORT_SCHEMA,
        "version": BUILD_REPORT_VERSION,
        "totals": build_totals(graph, result),
        "images": images,
        "rows": rows,
        "nodes": nodes,
    }


def summary_text(graph: BuildGraph, result: BuildResult) -> str:
    rows = summary_rows(graph, result)
    width = max([len(r[0]) for r in rows] + [5])
    lines = [f"{'image':<{width}}  layers  cached  built    time"]
    for name, layers, cached, built, secs in rows:
        status = "" if name in result.images else "  FAILED"
        lines.append(
            f"{name:<{width}}  {layers:>6}  {cached:>6}  {built:>5}  {secs:>5.1f}s{status}"
        )
    t = build_totals(graph, result)
    lines.append(
        f"{t['unique_nodes']} unique nodes: {t['built']} built, {t['cached']} cached"
        + (f", {t['pulled']} pulled" if t["pulled"] else "")
        + f" ({t['hit_ratio']:.0%} hits), {t['failed']} failed, {t['skipped']} skipped;"
        f" {human_bytes(t['bytes_written'])} written;"
        f" images {human_bytes(t['naive_bytes'])} naive vs {human_bytes(t['unique_bytes'])}"
        f" stored once (sharing saved {human_bytes(t['saved_bytes'])}); {result.seconds:.1f}s"
    )
    return "\n".join(lines)


# -- reporters -----------------------------------------------------------------------


class PlainReporter:
    """One line per finished node on ``out``; step output only for failures."""

    def __init__(self, out: TextIO, verbose: bool = False) -> None:
        self.out = out
        self.verbose = verbose
        self.total = 0
        self.done = 0
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def begin(self, graph: BuildGraph, keys: Sequence[str]) -> None:
        self.total = len(keys)

    def node_started(self, node: LayerNode, apps: frozenset[str]) -> None:
        if self.verbose:
            self._say(f"[run ] {_clip(node.label)}  ({', '.join(sorted(apps))})")

    def node_output(self, node: LayerNode, line: str) -> None:
        if self.verbose:
            self._say(f"       {short(node.key, 8)} | {line}")

    def node_finished(self, node: LayerNode, apps: frozenset[str], result: NodeResult) -> None:
        self.done += 1
        names = ", ".join(sorted(apps))
        secs = f" {result.seconds:.1f}s" if result.outcome == "built" else ""
        label = _clip(node.label, 60)
        where = f" on {result.worker}" if result.worker else ""
        self._say(f"[{self.done}/{self.total}] {result.outcome:<7} {label}{secs}  ({names}){where}")

    def end(self, result: BuildResult) -> None:
        pass


class RichReporter:
    """A live view on a terminal: per app, layers done/total, cached vs built, running step."""

    def __init__(self, console: Any) -> None:
        from rich.live import Live

        self.console = console
        self.live = Live(console=console, refresh_per_second=8, transient=True)
        self.graph: BuildGraph | None = None
        self.state: dict[str, str] = {}
        self.running: dict[str, str] = {}
        self._lock = threading.Lock()
        self.started = time.monotonic()

    def _render(self) -> Any:
        from rich.table import Table

        table = Table(box=None, show_header=True, header_style="bold")
        for col in ("app", "layers", "cached", "built", "now"):
            table.add_column(col)
        graph = self.graph
        if graph is None:
            return table
        for target in graph.outputs:
            keys = [k for k in graph.images[target].nodes if graph.node(k).kind != "base"]
            done = sum(1 for k in keys if self.state.get(k) in ("built", "cached"))
            cached = sum(1 for k in keys if self.state.get(k) == "cached")
            built = sum(1 for k in keys if self.state.get(k) == "built")
            failed = any(self.state.get(k) in ("failed", "skipped") for k in keys)
            now = next((self.running[k] for k in keys if k in self.running), "")
            status = "[red]failed[/red]" if failed else _clip(now, 50)
            table.add_row(target, f"{done}/{len(keys)}", str(cached), str(built), status)
        return table

    def begin(self, graph: BuildGraph, keys: Sequence[str]) -> None:
        self.graph = graph
        self.live.start()
        self.live.update(self._render())

    def node_started(self, node: LayerNode, apps: frozenset[str]) -> None:
        with self._lock:
            self.running[node.key] = node.label
            self.live.update(self._render())

    def node_output(self, node: LayerNode, line: str) -> None:
        pass

    def node_finished(self, node: LayerNode, apps: frozenset[str], result: NodeResult) -> None:
        with self._lock:
            self.running.pop(node.key, None)
            self.state[node.key] = result.outcome
            self.live.update(self._render())

    def end(self, result: BuildResult) -> None:
        self.live.stop()


def make_reporter(progress: str, verbose: bool, stream: TextIO) -> Reporter:
    """The reporter for ``--progress``: ``quiet`` (nothing), ``plain`` (lines; with
    ``verbose`` every line of step output too), ``rich`` (a live view), or ``auto``
    (rich on a terminal unless ``verbose``, plain otherwise)."""
    if progress == "quiet":
        return NullReporter()
    if progress == "rich" or (progress == "auto" and stream.isatty() and not verbose):
        from rich.console import Console

        return RichReporter(Console(file=stream))
    return PlainReporter(stream, verbose)
