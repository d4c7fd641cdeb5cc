"""Which cache keys of a graph change from run to run: the nodes that see a value made
by a volatile function (``timestamp()``, ``uuidv4()``...), as ``Fleet.volatile`` records
them, and every node built on one. Pure.

A RUN step sees a build argument through its step environment or the image
environment its key covers; a value is matched by content, so an ``ENV X=$ARG`` that
copied it counts too. Everything after such a node in its chain, and whatever copies
from it, is volatile as well.
"""

from __future__ import annotations

from pipeline.graph import BuildGraph
from pipeline.model import Fleet, Run


def volatile_keys(graph: BuildGraph, fleet: Fleet) -> dict[str, str]:
    """Node key -> why it is volatile (e.g. ``arg BUILD_DATE (timestamp)``)."""
    out: dict[str, str] = {}
    for app_id, marks in fleet.volatile.items():
        by = ", ".join(m[3:] for m in marks if m.startswith("by:")) or "volatile"
        args = [m[4:].partition("=") for m in marks if m.startswith("arg:")]
        everything = "all" in marks
        for image_id, plan in graph.images.items():
            if image_id != app_id and not image_id.startswith(app_id + "/"):
                continue
            seen: str | None = None
            for key in plan.nodes:
                node = graph.node(key)
                if seen is None and node.kind != "base":
                    if everything:
                        seen = f"its Dockerfile ({by})"
                    else:
                        envs = [*node.env, *(node.step.env if isinstance(node.step, Run) else ())]
                        values = [v for _, v in envs]
                        hit = next(
                            (n for n, _, v in args if v and any(v in x for x in values)), None
                        )
                        if hit is not None and node.kind == "run":
                            seen = f"arg {hit} ({by})"
                if seen is not None and node.kind != "base":
                    out.setdefault(key, seen)
    for later in graph.order():
        if later not in out:
            for pred in graph.predecessors(later):
                if pred in out:
                    out[later] = out[pred]
                    break
    return out
