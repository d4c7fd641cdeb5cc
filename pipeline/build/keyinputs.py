"""The inputs of each node's cache key, as a small JSON value kept in the store.

``pipeline why`` compares them: the key itself is a hash and says nothing about what
changed. The material mirrors what ``pipeline.graph`` hashes (the parent, the step,
the env/workdir/user a RUN sees, a COPY's sources and content), plus the node's depth
in its chain and, for a COPY from the build context, one row per copied path (path,
kind, mode, content digest or symlink target; never file contents). Pure.

Contracts:

* A key's material is a function of the key (equal keys give equal materials), so the
  store keeps the first one written and never rewrites it.
* ``MATERIAL_VERSION`` is stored in every material; a reader that meets another
  version treats the node as having no recorded inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.fs.contexthash import FileDigest
from pipeline.graph import BuildGraph
from pipeline.model import Copy, Run

MATERIAL_VERSION = 1

Manifests = Mapping[Copy, tuple[FileDigest, ...]]


def depths(graph: BuildGraph) -> dict[str, int]:
    """Each node's position in its chain: a base is 0, its child 1, and so on."""
    out: dict[str, int] = {}
    for key in graph.order():  # parents come first
        parent = graph.node(key).parent
        out[key] = 0 if parent is None else out[parent] + 1
    return out


def node_material(graph: BuildGraph, key: str, depth: int, manifests: Manifests) -> dict[str, Any]:
    """The key inputs of node ``key`` (see the module docstring)."""
    node = graph.node(key)
    out: dict[str, Any] = {
        "v": MATERIAL_VERSION,
        "kind": node.kind,
        "depth": depth,
        "parent": node.parent,
        "label": node.label,
    }
    if node.kind == "base":
        out["ref"] = node.base.ref if node.base else ""
        out["digest"] = node.base_digest
        out["resolved"] = node.resolved
        return out
    if node.kind == "stack":
        out["inputs"] = list(node.inputs)
        return out
    step = node.step
    if isinstance(step, Run):
        out["command"] = step.command if isinstance(step.command, str) else list(step.command)
        out["network"] = step.network
        out["mounts"] = sorted(
            [m.type, m.target, m.id if m.type == "cache" else ""] for m in step.mounts
        )
        out["env"] = dict(node.env)
        out["workdir"] = node.workdir
        out["user"] = node.user
        return out
    assert isinstance(step, Copy)
    out["sources"] = list(step.sources)
    out["dest"] = step.dest
    out["chown"] = step.chown
    out["chmod"] = step.chmod
    out["workdir"] = node.workdir
    out["from"] = node.copy_from
    rows = manifests.get(step)
    out["files"] = None if rows is None else [[r.rel, r.kind, r.mode, r.payload] for r in rows]
    return out


def materials(
    graph: BuildGraph, keys: Iterable[str], manifests: Manifests
) -> dict[str, dict[str, Any]]:
    """The material of each of ``keys``."""
    depth = depths(graph)
    return {k: node_material(graph, k, depth[k], manifests) for k in keys}


def encode(material: Mapping[str, Any]) -> str:
    """The stored text of a material (canonical JSON)."""
    return json.dumps(material, sort_keys=True, separators=(",", ":"))


def decode(text: str) -> dict[str, Any] | None:
    """A stored material, or None when it is unreadable or of another version."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("v") != MATERIAL_VERSION:
        return None
    return value
