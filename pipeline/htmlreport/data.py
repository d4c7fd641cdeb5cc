"""What the HTML report shows, as plain values: the merged DAG with layer sizes, each
app's shared and exclusive bytes, recent builds and the slowest steps. Reads the store;
writes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.graph import BuildGraph
from pipeline.store import Store

SLOW_STEP_BUILDS = 500  # the slowest steps are looked for in this many recent builds


@dataclass(frozen=True)
class DagNode:
    key: str
    kind: str
    label: str
    apps: tuple[str, ...]
    size: int | None  # bytes of its layer(s) in the store; None when not built

    @property
    def shared(self) -> bool:
        return len(self.apps) > 1


@dataclass(frozen=True)
class AppBytes:
    app: str
    shared: int  # bytes of layers that 2+ apps use
    exclusive: int  # bytes of layers only this app uses
    missing: int  # layers of the app not in the store (not counted above)


@dataclass(frozen=True)
class BuildPoint:
    id: int
    started: float
    seconds: float
    status: str
    hit_ratio: float | None
    built: int
    cached: int
    command: str


@dataclass(frozen=True)
class SlowStep:
    key: str
    label: str
    apps: tuple[str, ...]
    seconds: float
    build: int


@dataclass(frozen=True)
class ReportData:
    title: str
    nodes: tuple[DagNode, ...]
    edges: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str | None], ...]  # (image id, top key)
    apps: tuple[AppBytes, ...]
    builds: tuple[BuildPoint, ...]
    slowest: tuple[SlowStep, ...]
    summary: str


def node_size(store: Store, graph: BuildGraph, key: str) -> int | None:
    node = graph.node(key)
    if node.kind == "base":
        if not node.resolved:
            return None
        return sum(size for _, size in store.manifest_layers(node.base_digest))
    diff_id = store.lookup(key)
    return store.layer_size(diff_id) if diff_id else None


def gather(
    store: Store, graph: BuildGraph, title: str, builds: int = 30, slowest: int = 10
) -> ReportData:
    """The report's values for ``graph`` (the fleet's outputs) and the store's records."""
    used = graph.closure(graph.outputs)
    order = [k for k in graph.order() if k in used]
    nodes = tuple(
        DagNode(
            k,
            graph.node(k).kind,
            graph.node(k).label,
            tuple(sorted(graph.apps_of(k))),
            node_size(store, graph, k),
        )
        for k in order
    )
    by_key = {n.key: n for n in nodes}
    edges = tuple((a, b) for a, b in graph.edges() if a in used and b in used)
    apps = []
    for image_id in graph.outputs:
        shared = exclusive = missing = 0
        for key in graph.closure([image_id]):
            n = by_key[key]
            if n.size is None:
                missing += 1
            elif n.shared:
                shared += n.size
            else:
                exclusive += n.size
        apps.append(AppBytes(image_id, shared, exclusive, missing))
    records = store.builds(builds)
    points = tuple(
        BuildPoint(
            r.id,
            r.started,
            (r.finished - r.started) if r.finished else 0.0,
            r.status,
            r.summary.get("hit_ratio"),
            int(r.summary.get("built", 0)),
            int(r.summary.get("cached", 0)),
            r.command,
        )
        for r in records
    )
    slowest_of: dict[str, SlowStep] = {}  # per key, its slowest build
    for row in store.build_nodes(r.id for r in store.builds(SLOW_STEP_BUILDS)):
        if row.outcome == "built" and (
            row.key not in slowest_of or row.seconds > slowest_of[row.key].seconds
        ):
            slowest_of[row.key] = SlowStep(row.key, row.label, row.apps, row.seconds, row.build)
    steps = sorted(slowest_of.values(), key=lambda s: (-s.seconds, s.build))
    return ReportData(
        title,
        nodes,
        edges,
        tuple((i, graph.images[i].top) for i in graph.outputs),
        tuple(apps),
        points,
        tuple(steps[:slowest]),
        str(graph.summary()),
    )


def short_app(name: str) -> str:
    return name.split(".", 1)[1] if "." in name else name


def app_list(apps: Sequence[str], limit: int = 4) -> str:
    names = [short_app(a) for a in apps]
    return ", ".join(names[:limit]) + (f", +{len(names) - limit}" if len(names) > limit else "")
