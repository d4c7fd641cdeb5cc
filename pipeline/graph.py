"""The compiler: a Fleet becomes one merged layer DAG. Pure; the only networkx importer.

Every RUN and COPY step becomes a node whose key is the SHA-256 of a canonical
encoding of its parent's key, the normalised step, and what the step can observe
(env, workdir, user for RUN; workdir and the copied content digest for COPY).
Metadata steps change the image config and feed later keys but make no node.
Nodes with equal keys are one node; every node knows which outputs use it.

The compiler does no I/O: base images are looked up through the ``bases`` mapping
(resolved by the caller from the store) and build contexts are hashed through the
``copy_digest`` callback.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import networkx as nx


from pipeline.digest import key_of
from pipeline.errors import SpecError
from pipeline.model import BaseRef, Copy, Fleet, ImageDef, Meta, Pairs, Run
from pipeline.oci.config import HistoryEntry, ImageConfig, as_pairs

KEY_VERSION = 1


@dataclass(frozen=True)
class ResolvedBase:
    """A base image found in the store: its manifest digest, config and layers."""

    ref: str
    manifest_digest: str
    config: ImageConfig
    diff_ids: tuple[str, ...]
    history: tuple[tuple[str, bool], ...] = ()  # (created_by, empty_layer)


NodeKind = Literal["base", "run", "copy"]


@dataclass(frozen=True)
class LayerNode:
    """One node of the DAG: a base image, or one RUN/COPY layer."""

    key: str
    kind: NodeKind
    parent: str | None
    label: str
    step: Run | Copy | None = None
    env: Pairs = ()
    workdir: str = "/"
    user: str = ""
    base: BaseRef | None = None
    resolved: bool = True
    base_digest: str = ""
    copy_from: str | None = None  # key of the image top node a COPY --from reads
    content: str = ""  # a build-context COPY: the content digest its key was made from


@dataclass(frozen=True)
class ImagePlan:
    """What one ImageDef compiles to: its chain of nodes (base first) and config."""

    id: str
    nodes: tuple[str, ...]
    config: ImageConfig
    history: tuple[HistoryEntry, ...]
    tags: tuple[str, ...]
    is_output: bool
    base: ResolvedBase | None = None

    @property
    def top(self) -> str | None:
        return self.nodes[-1] if self.nodes else None


@dataclass(frozen=True)
class Summary:
    apps: int
    steps: int
    unique: int
    shared: int
    unresolved: tuple[str, ...]

    def __str__(self) -> str:
        text = (
            f"{self.apps} apps, {self.steps} steps -> {self.unique} unique layer nodes, "
            f"{self.shared} shared by 2+ apps"
        )
        if self.unresolved:
            text += f"; unresolved bases: {', '.join(self.unresolved)}"
        return text


@dataclass(frozen=True)
class BuildGraph:
    """The merged DAG: nodes are cache keys, edges run parent -> child (and COPY --from
    source -> copy). Read-only.

    The scheduler's queries (order, predecessors, closure) run on plain mappings, so a
    no-op build never pays for importing networkx (~0.1 s); ``graph`` gives the same
    DAG as a ``networkx.DiGraph`` (node attributes ``node`` and ``apps``), built on
    first use, for analysis and rendering.
    """

    nodes: Mapping[str, LayerNode]
    apps: Mapping[str, frozenset[str]]
    images: Mapping[str, ImagePlan]
    outputs: tuple[str, ...] = field(default=())

    def node(self, key: str) -> LayerNode:
        return self.nodes[key]

    def apps_of(self, key: str) -> frozenset[str]:
        return self.apps[key]

    def predecessors(self, key: str) -> tuple[str, ...]:
        """The nodes ``key`` depends on: its parent and its COPY --from source."""
        node = self.nodes[key]
        return tuple(k for k in (node.parent, node.copy_from) if k is not None)

    def edges(self) -> list[tuple[str, str]]:
        return [(p, k) for k in self.nodes for p in self.predecessors(k)]

    @cached_property
    def graph(self) -> nx.DiGraph[str]:
        import networkx

        graph: nx.DiGraph[str] = networkx.DiGraph()
        for key, node in self.nodes.items():
            graph.add_node(key, node=node, apps=self.apps[key])
        graph.add_edges_from(self.edges())
        return graph

    def order(self) -> list[str]:
        """All node keys in a deterministic topological order: of the nodes whose
        dependencies are done, the smallest key first (Kahn's algorithm on a heap)."""
        children: dict[str, list[str]] = {k: [] for k in self.nodes}
        waiting = {}
        for key in self.nodes:
            preds = self.predecessors(key)
            waiting[key] = len(preds)
            for p in preds:
                children[p].append(key)
        ready = [k for k, n in waiting.items() if n == 0]
        heapq.heapify(ready)
        out = []
        while ready:
            key = heapq.heappop(ready)
            out.append(key)
            for child in children[key]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, child)
        return out

    def closure(self, image_ids: Iterable[str]) -> set[str]:
        """Every node the given images need (their chains and COPY --from inputs)."""
        need: set[str] = set()
        stack = [k for i in image_ids for k in self.images[i].nodes]
        while stack:
            key = stack.pop()
            if key not in need:
                need.add(key)
                stack.extend(self.predecessors(key))
        return need

    def summary(self) -> Summary:
        steps = sum(len(self.images[i].nodes) for i in self.outputs)
        used = self.closure(self.outputs)
        shared = sum(1 for k in used if len(self.apps_of(k)) >= 2)
        unresolved = sorted(
            {
                n.base.ref
                for k in used
                if (n := self.node(k)).kind == "base" and not n.resolved and n.base
            }
        )
        return Summary(len(self.outputs), steps, len(used), shared, tuple(unresolved))


CopyDigest = Callable[[Copy], str]


def step_label(step: Run | Copy, full: bool = False) -> str:
    """How plans and progress show a step; with ``full``, the ``created_by`` text of the
    image history (the real command, as ``docker history`` shows it)."""
    if isinstance(step, Run):
        if step.display and not full:
            return f"RUN {step.display}"
        cmd = step.command if isinstance(step.command, str) else _json_list(step.command)
        return f"RUN {cmd}"
    if not step.sources and step.from_image is None:
        return f"WORKDIR {step.dest}"
    src = " ".join(step.sources)
    flags = f"--from={step.from_image} " if step.from_image else ""
    if step.chown:
        flags += f"--chown={step.chown} "
    if step.chmod:
        flags += f"--chmod={step.chmod} "
    return f"COPY {flags}{src} {step.dest}"


def meta_label(meta: Meta) -> str:
    v = meta.value
    if meta.field in ("env", "labels"):
        text = " ".join(f"{k}={val}" for k, val in as_pairs(v))
    elif isinstance(v, tuple):
        text = _json_list(tuple(str(x) for x in v))
    else:
        text = str(v)
    word = _META_WORDS.get(meta.field, meta.field.upper())
    return f"{word} {text}"


_META_WORDS = {
    "entrypoint-keep-cmd": "ENTRYPOINT",
    "volumes": "VOLUME",
    "author": "MAINTAINER",
}


def _json_list(items: tuple[str, ...]) -> str:
    import json

    return json.dumps(list(items))


def compile_fleet(
    fleet: Fleet,
    bases: Mapping[str, ResolvedBase],
    copy_digest: CopyDigest,
    outputs: Iterable[str] | None = None,
    epoch: int = 0,
) -> BuildGraph:
    """Compile ``fleet`` into one merged BuildGraph.

    ``bases`` maps a BaseRef.ref (for store/registry/oci bases) to what the store knows
    about it; a missing entry makes an *unresolved* base node whose key is derived
    from the reference text, flagged so that ``plan`` can say so and ``build`` can
    refuse. ``outputs`` limits which images are compiled (default: fleet.outputs()).
    ``epoch`` (SOURCE_DATE_EPOCH) is part of every RUN and COPY key: it decides the
    layer's tar, so layers made with different epochs are different layers.
    """
    compiler = _Compiler(fleet, bases, copy_digest, epoch)
    wanted = tuple(outputs) if outputs is not None else fleet.outputs()
    for image_id in wanted:
        compiler.plan(image_id, ())
    for image_id in wanted:
        for key in compiler.closure_keys(image_id):
            compiler.apps[key].add(image_id)
    images = {i: replace(p, is_output=i in wanted) for i, p in compiler.plans.items()}
    apps = {k: frozenset(v) for k, v in compiler.apps.items()}
    return BuildGraph(dict(compiler.nodes), apps, images, wanted)


class _Compiler:
    def __init__(
        self,
        fleet: Fleet,
        bases: Mapping[str, ResolvedBase],
        copy_digest: CopyDigest,
        epoch: int = 0,
    ) -> None:
        self.epoch = epoch
        self.fleet = fleet
        self.bases = bases
        self.copy_digest = copy_digest
        self.nodes: dict[str, LayerNode] = {}
        self.apps: dict[str, set[str]] = {}
        self.plans: dict[str, ImagePlan] = {}

    def _add(self, node: LayerNode) -> str:
        if node.key not in self.nodes:
            self.nodes[node.key] = node
            self.apps[node.key] = set()
        return node.key

    def closure_keys(self, image_id: str) -> set[str]:
        out: set[str] = set()
        stack = list(self.plans[image_id].nodes)
        while stack:
            key = stack.pop()
            if key in out:
                continue
            out.add(key)
            node = self.nodes[key]
            if node.parent:
                stack.append(node.parent)
            if node.copy_from:
                stack.append(node.copy_from)
        return out

    def plan(self, image_id: str, trail: tuple[str, ...]) -> ImagePlan:
        if image_id in self.plans:
            return self.plans[image_id]
        if image_id in trail:
            cycle = " -> ".join((*trail[trail.index(image_id) :], image_id))
            raise SpecError(self.fleet.images[image_id].loc, f"reference cycle: {cycle}")
        image = self.fleet.images.get(image_id)
        if image is None:
            raise SpecError(None, f"unknown image {image_id!r}")
        plan = self._compile(image, (*trail, image_id))
        self.plans[image_id] = plan
        return plan

    def _start(
        self, image: ImageDef, trail: tuple[str, ...]
    ) -> tuple[tuple[str, ...], ImageConfig, tuple[HistoryEntry, ...], ResolvedBase | None]:
        base = image.base
        if base.kind == "scratch":
            return (), ImageConfig(), (), None
        if base.kind == "block":
            if base.ref not in self.fleet.images:
                raise SpecError(base.loc, f"unknown reference {base.ref}")
            parent = self.plan(base.ref, trail)
            return parent.nodes, parent.config, parent.history, parent.base
        found = self.bases.get(base.ref)
        if found is None:
            key = key_of({"v": KEY_VERSION, "unresolved": base.kind, "ref": base.ref})
            node = LayerNode(key, "base", None, f"FROM {base.ref}", base=base, resolved=False)
            return (self._add(node),), ImageConfig(), (), None
        key = key_of({"v": KEY_VERSION, "base": found.manifest_digest})
        node = LayerNode(
            key, "base", None, f"FROM {base.ref}", base=base, base_digest=found.manifest_digest
        )
        history = tuple(HistoryEntry(c, e, key) for c, e in found.history)
        return (self._add(node),), found.config, history, found

    def _compile(self, image: ImageDef, trail: tuple[str, ...]) -> ImagePlan:
        nodes, config, history, base = self._start(image, trail)
        chain = list(nodes)
        hist = list(history)
        for step in image.steps:
            if isinstance(step, Meta):
                config = config.apply(step)
                hist.append(HistoryEntry(meta_label(step), True))
                continue
            parent = chain[-1] if chain else None
            node = self._step_node(step, parent, config, trail)
            chain.append(self._add(node))
            hist.append(HistoryEntry(step_label(step, full=True), False, node.key))
        return ImagePlan(image.id, tuple(chain), config, tuple(hist), image.tags, False, base)

    def _step_node(
        self, step: Run | Copy, parent: str | None, config: ImageConfig, trail: tuple[str, ...]
    ) -> LayerNode:
        workdir = config.workdir or "/"
        label = step_label(step)
        if isinstance(step, Run):
            env = config.run_env(step.env)
            material: dict[str, Any] = {
                "v": KEY_VERSION,
                "parent": parent,
                "run": step.command if isinstance(step.command, str) else list(step.command),
                "network": step.network,
                "mounts": sorted(
                    [m.type, m.target, m.id if m.type == "cache" else ""] for m in step.mounts
                ),
                "env": [list(p) for p in env],
                "workdir": workdir,
                "user": config.user,
                "epoch": self.epoch,
            }
            return LayerNode(
                key_of(material), "run", parent, label, step, env, workdir, config.user
            )
        copy_from = None
        if not step.sources and step.from_image is None:  # WORKDIR's mkdir
            material = {
                "v": KEY_VERSION,
                "parent": parent,
                "mkdir": step.dest,
                "user": config.user,
                "workdir": workdir,
                "epoch": self.epoch,
            }
            return LayerNode(
                key_of(material), "copy", parent, label, step, (), workdir, config.user
            )
        if step.from_image is not None:
            source = self.plan(step.from_image, trail)
            if source.top is None:
                raise SpecError(step.loc, f"COPY --from={step.from_image}: that image is empty")
            copy_from = source.top
            content = copy_from
        elif step.inline:
            content = key_of({"inline": [list(p) for p in step.inline]})
        else:
            content = self.copy_digest(step)
        material = {
            "v": KEY_VERSION,
            "parent": parent,
            "copy": {
                "sources": list(step.sources),
                "dest": step.dest,
                "chown": step.chown,
                "chmod": step.chmod,
                "content": content,
                "from": copy_from is not None,
                **({"unpack": True} if step.unpack else {}),
            },
            "workdir": workdir,
            "epoch": self.epoch,
        }
        return LayerNode(
            key_of(material),
            "copy",
            parent,
            label,
            step,
            (),
            workdir,
            config.user,
            copy_from=copy_from,
            content="" if copy_from is not None or step.inline else content,
        )
