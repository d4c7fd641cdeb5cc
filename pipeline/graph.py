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


from pipeline import factoring as pf
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


NodeKind = Literal["base", "run", "copy", "stack"]


@dataclass(frozen=True)
class LayerNode:
    """One node of the DAG: a base image, one RUN/COPY layer, or a *stack*: no layer of
    its own, it puts the layers of ``inputs`` (package layers built independently on
    ``parent``) on top of ``parent``'s chain, in that order."""

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
    inputs: tuple[str, ...] = ()  # a stack: its independent layers, bottom first


@dataclass(frozen=True)
class PackageLayer:
    """How one of an image's pip packages is layered (for ``plan``)."""

    key: str
    pins: tuple[str, ...]  # name==version
    reason: pf.UnitReason
    detail: str = ""


@dataclass(frozen=True)
class PendingPip:
    """A pip set not resolved yet in its environment (build resolves it, then compiles
    again); meanwhile it compiles to its one-shot step."""

    key: str  # pf.resolution_key
    env_key: str
    packages: tuple[str, ...]
    step: Run
    env: Pairs
    workdir: str
    user: str


@dataclass(frozen=True)
class PipOptions:
    """Factoring settings: ``resolutions`` by resolution key (from the lock file)."""

    factoring: bool = True
    resolutions: Mapping[str, pf.Resolution] = field(default_factory=dict)
    budget: int = pf.DEFAULT_LAYER_BUDGET
    off_for: frozenset[str] = frozenset()  # image ids with factoring switched off


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
    packages: tuple[PackageLayer, ...] = ()

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
    pending_pip: Mapping[str, PendingPip] = field(default_factory=dict)

    def node(self, key: str) -> LayerNode:
        return self.nodes[key]

    def apps_of(self, key: str) -> frozenset[str]:
        return self.apps[key]

    def predecessors(self, key: str) -> tuple[str, ...]:
        """The nodes ``key`` depends on: its parent and its COPY --from source."""
        node = self.nodes[key]
        return (*(k for k in (node.parent, node.copy_from) if k is not None), *node.inputs)

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

    def closure(self, image_ids: Iterable[str], keys: Iterable[str] = ()) -> set[str]:
        """Every node the given images (and ``keys``) need: their chains, COPY --from
        sources and stacked layers."""
        need: set[str] = set()
        stack = [k for i in image_ids for k in self.images[i].nodes] + list(keys)
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
    return f"{meta.field.upper()} {text}"


def _json_list(items: tuple[str, ...]) -> str:
    import json

    return json.dumps(list(items))


def compile_fleet(
    fleet: Fleet,
    bases: Mapping[str, ResolvedBase],
    copy_digest: CopyDigest,
    outputs: Iterable[str] | None = None,
    epoch: int = 0,
    pip: PipOptions | None = None,
) -> BuildGraph:
    """Compile ``fleet`` into one merged BuildGraph.

    ``bases`` maps a BaseRef.ref (for store/registry/oci bases) to what the store knows
    about it; a missing entry makes an *unresolved* base node whose key is derived
    from the reference text, flagged so that ``plan`` can say so and ``build`` can
    refuse. ``outputs`` limits which images are compiled (default: fleet.outputs()).
    ``epoch`` (SOURCE_DATE_EPOCH) is part of every RUN and COPY key: it decides the
    layer's tar, so layers made with different epochs are different layers.
    ``pip``: factoring of app pip sets (default: on, nothing resolved yet, so every
    set compiles to its one-shot step and is listed in ``pending_pip``). Resolved sets
    are compiled twice: once to count how many outputs use each pin, then with those
    counts, which order every stack (most shared first).
    """
    digests: dict[Copy, str] = {}

    def once(copy: Copy) -> str:
        if copy not in digests:
            digests[copy] = copy_digest(copy)
        return digests[copy]

    wanted = tuple(outputs) if outputs is not None else fleet.outputs()
    options = pip or PipOptions(factoring=True)
    compiler = _Compiler(fleet, bases, once, epoch, options, {})
    compiler.run(wanted)
    if compiler.unit_pins:
        counts: dict[str, int] = {}
        for image_id in wanted:
            used = {
                p for k in compiler.closure_keys(image_id) for p in compiler.unit_pins.get(k, ())
            }
            for pin_id in used:
                counts[pin_id] = counts.get(pin_id, 0) + 1
        compiler = _Compiler(fleet, bases, once, epoch, options, counts)
        compiler.run(wanted)
    images = {i: replace(p, is_output=i in wanted) for i, p in compiler.plans.items()}
    apps = {k: frozenset(v) for k, v in compiler.apps.items()}
    return BuildGraph(dict(compiler.nodes), apps, images, wanted, dict(compiler.pending))


class _Compiler:
    def __init__(
        self,
        fleet: Fleet,
        bases: Mapping[str, ResolvedBase],
        copy_digest: CopyDigest,
        epoch: int,
        pip: PipOptions,
        popularity: Mapping[str, int],
    ) -> None:
        self.pip = pip
        self.popularity = popularity
        self.pending: dict[str, PendingPip] = {}
        self.unit_pins: dict[str, tuple[str, ...]] = {}  # package layer key -> pin ids
        self.layer_counts: dict[str, int] = {}
        self.pending_stacks: dict[str, LayerNode] = {}
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

    def run(self, wanted: Iterable[str]) -> None:
        for image_id in wanted:
            self.plan(image_id, ())
        for image_id in wanted:
            for key in self.closure_keys(image_id):
                self.apps[key].add(image_id)

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
            stack.extend(node.inputs)
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
        packages: list[PackageLayer] = []
        link: LayerNode | None = None  # a stack the next source COPY may join
        for index, step in enumerate(image.steps):
            if isinstance(step, Meta):
                config = config.apply(step)
                hist.append(HistoryEntry(meta_label(step), True))
                continue
            parent = chain[-1] if chain else None
            if isinstance(step, Run) and step.pip and parent is not None:
                after = sum(1 for s in image.steps[index + 1 :] if not isinstance(s, Meta))
                factored = self._factored(image, step, parent, config, after)
                if factored is not None:
                    keys, entries, layers = factored
                    chain.extend(keys)
                    hist.extend(entries)
                    packages.extend(layers)
                    link = self.pending_stacks.get(keys[-1]) if len(keys) == 1 else None
                    if link is not None and link.key in self.nodes:
                        link = None  # already a node of its own
                    continue
            if isinstance(step, Copy) and step.from_image is None and link is not None:
                # the app's source, linked like the package layers (COPY --link): on the
                # environment, not on the stack, so a package change never rebuilds it
                env_key = link.parent
                node = self._step_node(step, env_key, config, trail)
                inputs = (*link.inputs, self._add(node))
                key = pf.stack_key(env_key or "", inputs)
                label = f"STACK {len(link.inputs)} package layers + source"
                chain[-1] = self._add(LayerNode(key, "stack", env_key, label, inputs=inputs))
                hist.append(HistoryEntry(step_label(step, full=True), False, node.key))
                link = None
                continue
            if link is not None:
                self._add(link)
                link = None
            node = self._step_node(step, parent, config, trail)
            chain.append(self._add(node))
            hist.append(HistoryEntry(step_label(step, full=True), False, node.key))
        if link is not None:
            self._add(link)
        return ImagePlan(
            image.id, tuple(chain), config, tuple(hist), image.tags, False, base, tuple(packages)
        )

    def _add_stack(self, stack: LayerNode, chained: bool) -> str:
        """A stack is added when something builds on it (a chained layer) or when the
        chain ends with it; a source COPY after it replaces it with a larger stack."""
        self.pending_stacks[stack.key] = stack
        return self._add(stack) if chained else stack.key

    def _layers(self, key: str) -> int:
        """How many filesystem layers the chain through ``key`` has."""
        if key not in self.layer_counts:
            node = self.nodes[key]
            if node.kind == "base":
                found = self.bases.get(node.base.ref) if node.base else None
                count = len(found.diff_ids) if found else 1
            else:
                below = self._layers(node.parent) if node.parent else 0
                count = below + (len(node.inputs) if node.kind == "stack" else 1)
            self.layer_counts[key] = count
        return self.layer_counts[key]

    def _factored(
        self, image: ImageDef, step: Run, parent: str, config: ImageConfig, after: int
    ) -> tuple[list[str], list[HistoryEntry], list[PackageLayer]] | None:
        """Independent package layers for a resolved pip set on ``parent`` (the
        environment layer), their stack, and a chained layer for what cannot be
        independent; None when factoring is off for ``image`` or the set is not
        resolved in this environment (then recorded as pending)."""
        if not self.pip.factoring or image.id in self.pip.off_for:
            return None
        env = config.run_env(step.env)
        rkey = pf.resolution_key(parent, step.pip, env)
        resolution = self.pip.resolutions.get(rkey)
        if resolution is None:
            workdir = config.workdir or "/"
            pending = PendingPip(rkey, parent, step.pip, step, env, workdir, config.user)
            self.pending[rkey] = pending
            return None
        units, chained = pf.plan_units(resolution, self.popularity, self._budget(parent, after))
        keys, entries, layers = [], [], []
        for unit in units:
            run = replace(step, command=pf.install_command(unit.pins), display=unit.label, pip=())
            node = self._step_node(run, parent, config, ())
            keys.append(self._add(node))
            self.unit_pins[node.key] = tuple(p.id for p in unit.pins)
            comment = f"{pf.PACKAGE_COMMENT} {' '.join(p.req for p in unit.pins)}"
            entries.append(HistoryEntry(step_label(run, full=True), False, node.key, comment))
            layers.append(
                PackageLayer(node.key, tuple(p.req for p in unit.pins), unit.reason, unit.detail)
            )
        label = f"STACK {len(keys)} package layers"
        stack = LayerNode(pf.stack_key(parent, keys), "stack", parent, label, inputs=tuple(keys))
        out = [self._add_stack(stack, bool(chained))]
        if chained:
            display = f"pip {' '.join(p.req for p in chained)} (--no-deps, chained)"
            run = replace(step, command=pf.install_command(chained), display=display, pip=())
            node = self._step_node(run, stack.key, config, ())
            out.append(self._add(node))
            comment = f"{pf.PACKAGE_COMMENT} {' '.join(p.req for p in chained)} (chained)"
            entries.append(HistoryEntry(step_label(run, full=True), False, node.key, comment))
            detail = "not a wheel: its install runs a build, so it stacks on the others"
            layers.append(PackageLayer(node.key, tuple(p.req for p in chained), "chained", detail))
        return out, entries, layers

    def _budget(self, parent: str, after: int) -> int:
        """Package layers an image may have: the budget less the layers below the
        environment and the steps after the pip set (at least one)."""
        return max(1, self.pip.budget - self._layers(parent) - after)

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
        if step.from_image is not None:
            source = self.plan(step.from_image, trail)
            if source.top is None:
                raise SpecError(step.loc, f"COPY --from={step.from_image}: that image is empty")
            copy_from = source.top
            content = copy_from
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
            content="" if copy_from is not None else content,
        )
