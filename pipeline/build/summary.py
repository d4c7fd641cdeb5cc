"""A build's figures: per-target rows and totals, as plain values. Pure."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from pipeline.build.executor import BuildResult
from pipeline.graph import BuildGraph


def hit_ratio(built: int, cached: int, pulled: int, steps: int) -> float:
    """Cache hits (cached or pulled) over the steps that completed; 1.0 for a build with
    no steps, 0.0 when steps exist but none completed (the first step failed)."""
    done = built + cached + pulled
    if done == 0:
        return 1.0 if steps == 0 else 0.0
    return (cached + pulled) / done


@dataclass(frozen=True)
class Row:
    """One target's line of the summary: its steps (base layers not counted) by outcome,
    and the seconds spent building them."""

    image: str
    layers: int
    cached: int
    pulled: int
    built: int
    failed: int  # failed or skipped
    seconds: float


def summary_rows(graph: BuildGraph, result: BuildResult) -> list[Row]:
    """Per target, in the build's order."""
    rows = []
    for target in result.targets:
        keys = [k for k in graph.images[target].nodes if graph.node(k).kind != "base"]
        res = [result.nodes[k] for k in keys if k in result.nodes]
        count = Counter(r.outcome for r in res)
        rows.append(
            Row(
                target,
                len(keys),
                count["cached"],
                count["pulled"],
                count["built"],
                count["failed"] + count["skipped"],
                sum(r.seconds for r in res),
            )
        )
    return rows


def build_totals(graph: BuildGraph, result: BuildResult) -> dict[str, Any]:
    """The build's totals: node outcomes, hit ratio, bytes written and shared."""
    steps = [r for k, r in result.nodes.items() if graph.node(k).kind != "base"]
    built = sum(1 for r in steps if r.outcome == "built")
    cached = sum(1 for r in steps if r.outcome == "cached")
    pulled = sum(1 for r in steps if r.outcome == "pulled")
    unique: dict[str, int] = {}
    naive = 0
    for image in result.images.values():
        for diff_id, size in image.layers:
            unique[diff_id] = size
            naive += size
    return {
        "unique_nodes": len(steps),
        "built": built,
        "cached": cached,
        "pulled": pulled,
        "failed": sum(1 for r in steps if r.outcome == "failed"),
        "skipped": sum(1 for r in steps if r.outcome == "skipped"),
        "hit_ratio": hit_ratio(built, cached, pulled, len(steps)),
        "bytes_written": sum(r.size for r in steps if r.outcome == "built"),
        "unique_bytes": sum(unique.values()),
        "naive_bytes": naive,
        "saved_bytes": naive - sum(unique.values()),
        "seconds": round(result.seconds, 3),
    }
