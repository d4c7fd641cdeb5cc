"""Rendering: plans (text, json, dot, mermaid), build progress and summaries.

Renderers are pure functions returning text. The reporters write to the stream they
are given (plain lines, :mod:`pipeline.report.progress`) or drive a rich live view
(:mod:`pipeline.report.live`, the only rich importer); the executor talks to them only
through the ``Reporter`` protocol.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from pipeline.build.executor import BuildResult, Reporter
from pipeline.build.summary import build_totals, summary_rows
from pipeline.build.transfers import TransferProgress
from pipeline.digest import short
from pipeline.graph import BuildGraph
from pipeline.report.progress import clip as _clip
from pipeline.report.progress import human_bytes as human_bytes  # re-exported

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
        nodes.append(entry)
    images = {
        i: {
            "nodes": list(graph.images[i].nodes),
            "tags": list(graph.images[i].tags),
            "config": graph.images[i].config.to_oci(),
        }
        for i in graph.outputs
    }
    s = graph.summary()
    summary = {"apps": s.apps, "steps": s.steps, "unique": s.unique, "shared": s.shared}
    return {"nodes": nodes, "images": images, "summary": summary}


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
            branch = "└─ " if depth == len(plan.nodes) - 1 else "├─ "
            lines.append(f"  {branch}{short(key)} {_clip(node.label)}{mark}")
        lines.append("")
    lines.append(str(graph.summary()))
    return "\n".join(lines)


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
        {
            "image": r.image,
            "layers": r.layers,
            "cached": r.cached,
            "pulled": r.pulled,
            "built": r.built,
            "seconds": round(r.seconds, 3),
        }
        for r in summary_rows(graph, result)
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
    """The per-image table, then :func:`final_line`. Counts are of steps (base layers
    are not steps), as the progress's ``[n/N]`` counter counts them."""
    rows = summary_rows(graph, result)
    width = max([len(r.image) for r in rows] + [5])
    lines = [f"{'image':<{width}}  layers  cached  pulled  built    time"]
    for r in rows:
        status = "" if r.image in result.images else "  FAILED"
        lines.append(
            f"{r.image:<{width}}  {r.layers:>6}  {r.cached:>6}  {r.pulled:>6}  {r.built:>5}"
            f"  {r.seconds:>5.1f}s{status}"
        )
    lines.append(final_line(graph, result))
    return "\n".join(lines)


def end_text(graph: BuildGraph, result: BuildResult, progress: str) -> str:
    """What a build command prints at the end: the summary, or for ``quiet`` the
    final line alone."""
    if progress == "quiet":
        return final_line(graph, result)
    return summary_text(graph, result)


def final_line(graph: BuildGraph, result: BuildResult) -> str:
    """The build's totals in one line (all that ``--progress quiet`` prints on success)."""
    t = build_totals(graph, result)
    return (
        f"{t['unique_nodes']} unique nodes: {t['built']} built, {t['cached']} cached,"
        f" {t['pulled']} pulled ({t['hit_ratio']:.0%} hits), {t['failed']} failed,"
        f" {t['skipped']} skipped; {human_bytes(t['bytes_written'])} written;"
        f" images {human_bytes(t['naive_bytes'])} naive vs {human_bytes(t['unique_bytes'])}"
        f" stored once (sharing saved {human_bytes(t['saved_bytes'])}); {result.seconds:.1f}s"
    )


# -- reporters -----------------------------------------------------------------------


def make_reporter(progress: str, verbose: bool, stream: TextIO) -> Reporter:
    """The reporter for ``--progress``: ``quiet`` (errors only: a failed step's log as
    it fails), ``plain`` (one line per event; with ``verbose`` every line of step output
    too), ``rich`` (a live view), or ``auto`` (rich on a terminal unless ``verbose``,
    plain otherwise)."""
    from pipeline.report.progress import PlainReporter, QuietReporter

    if progress == "quiet":
        return QuietReporter(stream)
    if progress == "rich" or (progress == "auto" and stream.isatty() and not verbose):
        from pipeline.report.live import LiveReporter

        return LiveReporter.on(stream)
    return PlainReporter(stream, verbose)


@contextlib.contextmanager
def transfers(stream: TextIO) -> Iterator[TransferProgress]:
    """Byte progress for ``push`` and ``pull``: bars on a terminal, lines otherwise;
    the view is gone (the terminal restored) when the block ends."""
    reporter = make_reporter("auto", False, stream)
    try:
        yield reporter.transfer
    finally:
        close(reporter)


def start(reporter: Reporter) -> None:
    """Let a live view draw before the build begins (while specs load and bases
    resolve); pair with :func:`close`."""
    begin = getattr(reporter, "start", None)
    if begin is not None:
        begin()


def close(reporter: Reporter) -> None:
    """Stop a reporter that never reached ``end`` (a live view restores the terminal)."""
    stop = getattr(reporter, "close", None)
    if stop is not None:
        stop()
