"""A scheduling simulation of a large fleet on many workers, from measured step times.

The DAG is the benchmark workload's shape (``benchmarks.workload``): one shared system
RUN step, ``dep_sets`` dependency RUN steps on it, one COPY per app on its dependency
set; optionally (``app_run``) one more RUN step per app above its COPY (a per-app
build step). Each node's duration is the measured median seconds of its kind, taken
from a real ``--json-report`` (the per-node ``seconds`` workers reported, which
include their registry lookups, fetches and pushes). The scheduler is modelled as
one serial server that spends ``dispatch`` seconds on every task before a worker can
start it (measured: the Dask scheduler's rate for trivial tasks on this machine).

Scheduling is list scheduling, as Dask does with our priorities: whenever a worker
slot is free, the ready task with the longest remaining path (in seconds, itself
included) starts. Reported per worker count: total work T1 (sum of durations), the
critical path T_inf (the longest chain), the simulated makespan, and the speedup
T1 / makespan (at most T1 / T_inf whatever the number of workers).
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Node:
    name: str
    seconds: float
    parents: tuple[str, ...]


def fleet_dag(
    apps: int, dep_sets: int, times: Mapping[str, float], app_run: bool = False
) -> list[Node]:
    """The workload's DAG, topologically ordered, with ``times`` keyed ``system``,
    ``deps``, ``copy`` (and ``app_run``)."""
    out = [Node("system", times["system"], ())]
    out += [Node(f"deps-{k}", times["deps"], ("system",)) for k in range(dep_sets)]
    for i in range(apps):
        out.append(Node(f"copy-{i}", times["copy"], (f"deps-{i % dep_sets}",)))
        if app_run:
            out.append(Node(f"run-{i}", times["app_run"], (f"copy-{i}",)))
    return out


def critical_path(nodes: Sequence[Node]) -> dict[str, float]:
    """For each node, the longest path in seconds from it to a sink (itself included)."""
    children: dict[str, list[str]] = {n.name: [] for n in nodes}
    for n in nodes:
        for p in n.parents:
            children[p].append(n.name)
    by = {n.name: n for n in nodes}
    out: dict[str, float] = {}
    for n in reversed(nodes):
        out[n.name] = by[n.name].seconds + max((out[c] for c in children[n.name]), default=0.0)
    return out


def simulate(nodes: Sequence[Node], workers: int, dispatch: float = 0.0) -> float:
    """The makespan of ``nodes`` on ``workers`` one-slot workers (module docstring)."""
    height = critical_path(nodes)
    waiting = {n.name: len(n.parents) for n in nodes}
    children: dict[str, list[str]] = {n.name: [] for n in nodes}
    for n in nodes:
        for p in n.parents:
            children[p].append(n.name)
    by = {n.name: n for n in nodes}
    ready: list[tuple[float, str]] = [(-height[n.name], n.name) for n in nodes if not n.parents]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []  # (finish time, name)
    free = workers
    now = 0.0
    scheduler_free = 0.0
    done = 0
    while done < len(nodes):
        while free and ready:
            _, name = heapq.heappop(ready)
            scheduler_free = max(scheduler_free, now) + dispatch
            heapq.heappush(running, (scheduler_free + by[name].seconds, name))
            free -= 1
        now, name = heapq.heappop(running)
        free += 1
        done += 1
        for c in children[name]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, (-height[c], c))
    return now


def step_times(report: Mapping[str, Any]) -> dict[str, float]:
    """Median measured seconds per kind of node of a workload build's JSON report."""
    system, deps, copy = [], [], []
    for n in report["nodes"]:
        if n["kind"] == "copy":
            copy.append(n["seconds"])
        elif "/opt/system" in n["label"]:
            system.append(n["seconds"])
        else:
            deps.append(n["seconds"])
    return {
        "system": statistics.median(system),
        "deps": statistics.median(deps),
        "copy": statistics.median(copy),
    }


def table(
    apps: int,
    dep_sets: int,
    times: Mapping[str, float],
    dispatch: float,
    worker_counts: Sequence[int] = (1, 10, 100),
    app_run: bool = False,
) -> dict[str, Any]:
    nodes = fleet_dag(apps, dep_sets, times, app_run)
    t1 = sum(n.seconds for n in nodes)
    t_inf = max(critical_path(nodes).values())
    rows = []
    for w in worker_counts:
        makespan = simulate(nodes, w, dispatch)
        rows.append({"workers": w, "makespan": makespan, "speedup": t1 / makespan})
    return {
        "apps": apps,
        "dep_sets": dep_sets,
        "nodes": len(nodes),
        "app_run": app_run,
        "times": dict(times),
        "dispatch": dispatch,
        "total_work": t1,
        "critical_path": t_inf,
        "bound": t1 / t_inf,
        "rows": rows,
    }
