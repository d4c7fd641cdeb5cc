"""``pipeline why``: which input of a node's cache key changed.

For each layer of an app that is not in the store, or that differs from the app's
chain in its last recorded build, the node's key inputs (``build.keyinputs``) are
compared with those of the closest stored node: the node at the same position of the
app's most recent recorded chain that differs from the current one, else a stored
node on the same parent (a sibling). The differences are the cause: the command text,
an env var (name, old and new value), workdir, user, network, mounts, the parent, or,
for a COPY, the files (added, removed, modified paths; a modified path says which
attribute changed: content, mode, kind or symlink target).

The comparison (``explain``, ``diff_materials``) is pure; ``why_app`` reads the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.build import keyinputs
from pipeline.digest import short
from pipeline.graph import BuildGraph
from pipeline.store import Store

Material = Mapping[str, Any]
FILES_SHOWN = 20


@dataclass(frozen=True)
class Change:
    """One key input that differs. ``name`` is set for an env var; ``None`` as a value
    means the input was absent (an env var unset, no ``--chown``)."""

    what: str
    old: str | None
    new: str | None
    name: str = ""


@dataclass(frozen=True)
class FileChanges:
    """How two COPY file lists differ; ``modified`` rows are (path, attribute)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    modified: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)


@dataclass(frozen=True)
class NodeWhy:
    """One layer of an app that is missing from the store or differs from before."""

    position: int  # 0 is the base
    key: str
    label: str
    in_store: bool
    against: str | None = None  # the key compared with
    against_how: str = ""  # "build #N" or "stored sibling"
    changes: tuple[Change, ...] = ()
    files: FileChanges | None = None
    note: str = ""


@dataclass(frozen=True)
class AppWhy:
    app: str
    layers: int  # positions in the chain, the base included
    compared_build: int | None
    nodes: tuple[NodeWhy, ...]


@dataclass(frozen=True)
class RecordedChain:
    build: int
    keys: tuple[str, ...]  # base first
    materials: Mapping[str, Material]


# -- the pure part ----------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def diff_materials(old: Material, new: Material) -> tuple[tuple[Change, ...], FileChanges | None]:
    """The key inputs that differ between two nodes' materials, in a fixed order."""
    if old.get("kind") != new.get("kind"):
        return (Change("step", _text(old.get("label")), _text(new.get("label"))),), None
    changes: list[Change] = []
    if old.get("parent") != new.get("parent"):
        changes.append(Change("parent", old.get("parent"), new.get("parent")))
    fields = {
        "base": ("ref", "digest"),
        "run": ("command", "network", "mounts", "workdir", "user"),
        "copy": ("sources", "dest", "chown", "chmod", "workdir", "from"),
    }[str(new.get("kind"))]
    for name in fields:
        if old.get(name) != new.get(name):
            changes.append(Change(name, _text(old.get(name)), _text(new.get(name))))
    if new.get("kind") == "run":
        old_env, new_env = old.get("env") or {}, new.get("env") or {}
        for var in sorted(set(old_env) | set(new_env)):
            if old_env.get(var) != new_env.get(var):
                changes.append(Change("env", old_env.get(var), new_env.get(var), var))
    files = None
    if new.get("kind") == "copy" and old.get("files") is not None and new.get("files") is not None:
        files = diff_files(old["files"], new["files"])
    return tuple(changes), files


def diff_files(old: Sequence[Sequence[Any]], new: Sequence[Sequence[Any]]) -> FileChanges:
    """Rows are [path, kind, mode, payload] (payload: content digest or link target)."""
    before = {str(r[0]): r for r in old}
    after = {str(r[0]): r for r in new}
    modified = []
    for path in sorted(set(before) & set(after)):
        a, b = before[path], after[path]
        if a[1] != b[1]:
            modified.append((path, "kind"))
        elif a[3] != b[3]:
            modified.append((path, "target" if b[1] == "symlink" else "content"))
        elif a[2] != b[2]:
            modified.append((path, "mode"))
    return FileChanges(
        tuple(sorted(set(after) - set(before))),
        tuple(sorted(set(before) - set(after))),
        tuple(modified),
    )


def explain(
    app: str,
    chain: Sequence[tuple[str, Material]],
    in_store: Callable[[str], bool],
    previous: RecordedChain | None,
    siblings: Callable[[str | None, str], Sequence[tuple[str, Material]]],
) -> AppWhy:
    """Compare each layer of ``chain`` (the current (key, material) pairs, base first)
    that is missing from the store or differs from ``previous`` with its closest
    stored relative. ``siblings(parent, kind)`` gives stored nodes on that parent."""
    nodes = []
    for pos, (key, material) in enumerate(chain):
        stored = in_store(key)
        old_key = previous.keys[pos] if previous and pos < len(previous.keys) else None
        if stored and (previous is None or old_key == key):
            continue
        label = str(material.get("label", ""))
        if old_key == key:
            note = "same inputs as before; its layer is no longer in the store (pruned?)"
            nodes.append(NodeWhy(pos, key, label, stored, key, "", note=note))
            continue
        if previous is not None and old_key is not None:
            old = previous.materials.get(old_key)
            how = f"build #{previous.build}"
        else:
            found = [(k, m) for k, m in siblings(material.get("parent"), material["kind"])]
            old_key, old = _closest(material, found)
            how = "stored sibling"
        if old_key is None or old is None:
            note = "a new step: no earlier node at this position"
            nodes.append(NodeWhy(pos, key, label, stored, note=note))
            continue
        changes, files = diff_materials(old, material)
        nodes.append(NodeWhy(pos, key, label, stored, old_key, how, changes, files))
    return AppWhy(app, len(chain), previous.build if previous else None, tuple(nodes))


def _closest(
    material: Material, candidates: Sequence[tuple[str, Material]]
) -> tuple[str | None, Material | None]:
    best: tuple[int, str, Material] | None = None
    for key, other in candidates:
        changes, files = diff_materials(other, material)
        cost = len(changes) + (1 if files else 0)
        if best is None or (cost, key) < best[:2]:
            best = (cost, key, other)
    return (best[1], best[2]) if best else (None, None)


def chain_of(
    app: str, rows: Sequence[tuple[str, Sequence[str]]], materials: Mapping[str, Material]
) -> tuple[str, ...] | None:
    """The chain (base first) an app had in one build, from that build's node rows
    (key, apps) and the kept materials; None when some material is missing."""
    keys = {k for k, apps in rows if app in apps}
    if not keys or any(k not in materials for k in keys):
        return None
    parents = {materials[k].get("parent") for k in keys}
    sources = {materials[k].get("from") for k in keys}
    tops = [k for k in keys if k not in parents and k not in sources]
    if not tops:
        return None
    key: str | None = max(tops, key=lambda k: (int(materials[k].get("depth", 0)), k))
    out = []
    while key is not None:
        out.append(key)
        found = materials.get(key)
        if found is None:
            return None
        key = found.get("parent")
    return tuple(reversed(out))


# -- the store side -----------------------------------------------------------------------


def recorded_chain(
    store: Store, app: str, current: Sequence[str], limit: int = 200
) -> RecordedChain | None:
    """The app's chain in its most recent recorded build where it differs from
    ``current``; else its most recent chain; None when no build of it was recorded
    with key inputs."""
    records = store.builds(limit)
    rows = store.build_nodes(r.id for r in records)
    by_build: dict[int, list[tuple[str, tuple[str, ...]]]] = {}
    for row in rows:
        by_build.setdefault(row.build, []).append((row.key, row.apps))
    keys = {row.key for row in rows}
    texts = store.node_inputs(keys)
    materials = {k: m for k, t in texts.items() if (m := keyinputs.decode(t)) is not None}
    parents = {m.get("parent") for m in materials.values()} - set(materials) - {None}
    for k, t in store.node_inputs(p for p in parents if isinstance(p, str)).items():
        if (m := keyinputs.decode(t)) is not None:
            materials[k] = m
    latest: RecordedChain | None = None
    for build in sorted(by_build, reverse=True):
        chain = chain_of(app, by_build[build], materials)
        if chain is None:
            continue
        found = RecordedChain(build, chain, {k: materials[k] for k in chain})
        if chain != tuple(current):
            return found
        latest = latest or found
    return latest


def why_app(store: Store, graph: BuildGraph, app: str, manifests: keyinputs.Manifests) -> AppWhy:
    """Explain ``app``'s layers against the store (see the module docstring)."""
    chain = graph.images[app].nodes
    current = keyinputs.materials(graph, chain, manifests)
    previous = recorded_chain(store, app, chain)
    everything: dict[str, Material] | None = None

    def in_store(key: str) -> bool:
        if graph.node(key).kind == "base":
            return graph.node(key).resolved
        return store.lookup(key) is not None

    def siblings(parent: str | None, kind: str) -> list[tuple[str, Material]]:
        nonlocal everything
        if everything is None:
            everything = {
                k: m
                for k, t in store.all_node_inputs().items()
                if (m := keyinputs.decode(t)) is not None
            }
        return [
            (k, m)
            for k, m in everything.items()
            if m.get("parent") == parent and m.get("kind") == kind and store.lookup(k)
        ]

    return explain(app, [(k, current[k]) for k in chain], in_store, previous, siblings)


# -- rendering ------------------------------------------------------------------------------


def _value(v: str | None) -> str:
    return "unset" if v is None else json.dumps(v)


def _pair(old: str | None, new: str | None, context: int = 24) -> tuple[str, str]:
    """Two values as shown: long strings cut down to where they differ (with
    ``context`` characters around it), so a long command shows its changed part."""
    if old is None or new is None or len(old) + len(new) <= 160:
        return _value(old), _value(new)
    head = 0
    while head < min(len(old), len(new)) and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < min(len(old), len(new)) - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    start = max(0, head - context)

    def cut(text: str) -> str:
        end = min(len(text), len(text) - tail + context)
        body = json.dumps(text[start:end])[1:-1]
        return f'"{"…" if start else ""}{body}{"…" if end < len(text) else ""}"'

    return cut(old), cut(new)


def render(why: AppWhy) -> str:
    """The text ``pipeline why`` prints for one app."""
    against = f"build #{why.compared_build}" if why.compared_build else "the store"
    if not why.nodes:
        return f"{why.app}: every layer is in the store and matches {against}"
    lines = [f"{why.app}: {len(why.nodes)} of {why.layers} layers differ from {against}"]
    for n in why.nodes:
        state = "in store" if n.in_store else "not in store"
        lines.append(f"  #{n.position} {n.label}  [{state}]")
        if n.note:
            lines.append(f"      {n.note}")
        if n.against and n.against != n.key:
            lines.append(f"      compared with {short(n.against)} ({n.against_how})")
        for c in n.changes:
            if c.what == "parent":
                lines.append(
                    f"      parent: {short(c.old or '')} -> {short(c.new or '')}"
                    " (an earlier layer changed)"
                )
            elif c.what == "env":
                old, new = _pair(c.old, c.new)
                lines.append(f"      env {c.name}: {old} -> {new}")
            else:
                old, new = _pair(c.old, c.new)
                lines.append(f"      {c.what}: {old} -> {new}")
        if n.files:
            lines.extend(_files_lines(n.files))
        if n.against and n.against != n.key and not n.changes and not n.files:
            lines.append("      no recorded input differs (another key version?)")
    return "\n".join(lines)


def _files_lines(files: FileChanges) -> list[str]:
    out = []
    for title, items in (
        ("added", list(files.added)),
        ("removed", list(files.removed)),
        ("modified", [f"{p} ({what})" for p, what in files.modified]),
    ):
        if items:
            shown = ", ".join(items[:FILES_SHOWN])
            more = f", ... (+{len(items) - FILES_SHOWN})" if len(items) > FILES_SHOWN else ""
            out.append(f"      files {title} ({len(items)}): {shown}{more}")
    return out
