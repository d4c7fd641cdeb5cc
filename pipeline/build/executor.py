"""The scheduler: runs the merged DAG on a worker pool into the store.

A ready-queue over the graph: a node starts when everything it depends on is done.
Each unique node is built at most once per run (and, across processes, once per
store: a per-key lock with a re-check after taking it). Cache hits are settled in
the scheduling thread without touching the pool. A failed node stops its
descendants only; other branches finish. Images (config + manifest) are written for
every target whose nodes all succeeded.

Progress goes only through the ``Reporter`` given in; nothing here prints.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from pipeline.errors import Location, StepFailure, StoreError
from pipeline.graph import BuildGraph, ImagePlan, LayerNode
from pipeline.model import Copy, Run
from pipeline.oci.config import HistoryEntry
from pipeline.oci.manifest import Descriptor, image_config_blob, manifest_blob
from pipeline.oci.media import MT_LAYER
from pipeline.sandbox.api import BindMount, RunSpec, StepRunner
from pipeline.store import Store

if TYPE_CHECKING:
    from pipeline.fs.context import Entry

Outcome = Literal["built", "cached", "pulled", "failed", "skipped"]
DONE: tuple[Outcome, ...] = ("built", "cached", "pulled")


class RemoteCache(Protocol):
    """A shared layer cache elsewhere (a registry): cache key -> layer."""

    def fetch(self, key: str, store: Store) -> str | None:
        """Put the layer recorded for ``key`` into ``store`` (verified, atomic) and
        return its diff_id; None when the remote has no entry for ``key``."""
        ...

    def publish(self, entries: Sequence[tuple[str, str]], store: Store) -> None:
        """Upload the layers and the (key, diff_id) mapping of ``entries``."""
        ...


@dataclass(frozen=True)
class BuildOptions:
    jobs: int = 2
    epoch: int = 0
    ca_bundle: Path | None = None
    cache_from: RemoteCache | None = None
    cache_to: RemoteCache | None = None
    rebuild: frozenset[str] = frozenset()  # node keys built again, cache or not (no-cache)


@dataclass(frozen=True)
class NodeResult:
    key: str
    outcome: Outcome
    layers: tuple[str, ...] = ()  # the chain's diff_ids, bottom first, through this node
    seconds: float = 0.0
    size: int = 0  # bytes of this node's own layer(s) when built
    failure: StepFailure | None = None
    worker: str = ""  # the cluster worker that settled it (empty for a local build)


@dataclass(frozen=True)
class ImageResult:
    id: str
    manifest: str
    names: tuple[str, ...]
    layers: tuple[tuple[str, int], ...]  # (diff_id, size)


@dataclass(frozen=True)
class BuildResult:
    nodes: Mapping[str, NodeResult]
    images: Mapping[str, ImageResult]
    failures: tuple[StepFailure, ...]
    seconds: float
    targets: tuple[str, ...] = field(default=())

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.nodes.values() if r.outcome == outcome)


class Reporter(Protocol):
    def begin(self, graph: BuildGraph, keys: Sequence[str]) -> None: ...
    def node_started(self, node: LayerNode, apps: frozenset[str]) -> None: ...
    def node_output(self, node: LayerNode, line: str) -> None: ...
    def node_finished(self, node: LayerNode, apps: frozenset[str], result: NodeResult) -> None: ...
    def end(self, result: BuildResult) -> None: ...


class NullReporter:
    def begin(self, graph: BuildGraph, keys: Sequence[str]) -> None:
        pass

    def node_started(self, node: LayerNode, apps: frozenset[str]) -> None:
        pass

    def node_output(self, node: LayerNode, line: str) -> None:
        pass

    def node_finished(self, node: LayerNode, apps: frozenset[str], result: NodeResult) -> None:
        pass

    def end(self, result: BuildResult) -> None:
        pass


class _StepFailed(Exception):
    def __init__(self, exit_code: int | None, tail: tuple[str, ...], reason: str = "") -> None:
        super().__init__(reason or f"exit code {exit_code}")
        self.exit_code = exit_code
        self.tail = tail
        self.reason = reason


def build(
    graph: BuildGraph,
    store: Store,
    targets: Sequence[str],
    options: BuildOptions,
    reporter: Reporter | None = None,
    runner: StepRunner | None = None,
) -> BuildResult:
    """Build every node ``targets`` need, then write their images. Never raises for a
    failing step (see ``BuildResult.failures``); raises StoreError/SandboxError for a
    broken store or host.

    ``runner`` runs RUN steps (default: the Linux sandbox). An exception in the
    scheduling thread, such as KeyboardInterrupt from Ctrl-C, stops the build: the
    runner kills every running step, the pool drains (a killed step is never
    committed, its staging dir is removed), and the exception propagates; nodes that
    finished before are in the store, so a rerun starts from them."""
    rep = reporter or NullReporter()
    if runner is None:
        from pipeline.sandbox.linux import LinuxRunner

        runner = LinuxRunner()
    started = time.monotonic()
    need = graph.closure(targets)
    order = [k for k in graph.order() if k in need]
    if any(graph.node(k).kind == "run" and store.lookup(k) is None for k in order):
        runner.check_host()  # one clear line when this host cannot run steps at all
    rep.begin(graph, order)
    results: dict[str, NodeResult] = {}
    with store.gc_lock(), ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        running: dict[Future[NodeResult], str] = {}
        try:
            _schedule(graph, store, order, options, rep, runner, pool, running, results)
        except BaseException:
            _drain(runner, running)
            with contextlib.suppress(Exception):  # let a live view restore the terminal
                partial = tuple(r.failure for r in results.values() if r.failure is not None)
                rep.end(BuildResult(results, {}, partial, time.monotonic() - started, ()))
            raise
        images = {}
        for target in targets:
            plan = graph.images[target]
            if all(results[k].outcome in DONE for k in plan.nodes):
                images[target] = _write_image(store, plan, results)
    if options.cache_to is not None:
        entries = [
            (k, r.layers[-1])
            for k, r in results.items()
            if r.outcome in DONE and graph.node(k).kind != "base" and r.layers
        ]
        options.cache_to.publish(entries, store)
    failures = tuple(r.failure for r in results.values() if r.failure is not None)
    result = BuildResult(results, images, failures, time.monotonic() - started, tuple(targets))
    rep.end(result)
    return result


def _drain(runner: StepRunner, running: Mapping[Future[NodeResult], str]) -> None:
    """Stop: kill the running steps and wait for their threads, killing again while
    any is left (a step that was just starting when the first kill went out). A second
    Ctrl-C while draining does not interrupt the drain."""
    runner.stop()
    futures = list(running)
    while True:
        try:
            _, not_done = wait(futures, timeout=0.2)
            if not not_done:
                return
            runner.stop()
        except KeyboardInterrupt:
            continue


def _schedule(
    graph: BuildGraph,
    store: Store,
    order: Sequence[str],
    options: BuildOptions,
    rep: Reporter,
    runner: StepRunner,
    pool: ThreadPoolExecutor,
    running: dict[Future[NodeResult], str],
    results: dict[str, NodeResult],
) -> None:
    """The ready-queue: start every node whose inputs are done, settle cache hits here,
    and record each result as it arrives, until every node of ``order`` has one."""
    pending = list(order)
    while pending or running:
        progressed = True
        while progressed:
            progressed = False
            for key in list(pending):
                preds = graph.predecessors(key)
                if any(p not in results for p in preds):
                    continue
                pending.remove(key)
                progressed = True
                node = graph.node(key)
                apps = graph.apps_of(key)
                bad = [p for p in preds if results[p].outcome in ("failed", "skipped")]
                if bad:
                    results[key] = NodeResult(key, "skipped")
                    rep.node_finished(node, apps, results[key])
                    continue
                parent_layers = results[node.parent].layers if node.parent else ()
                hit = None if key in options.rebuild else _cached(store, node, parent_layers)
                if hit is not None:
                    results[key] = hit
                    rep.node_finished(node, apps, hit)
                    continue
                rep.node_started(node, apps)
                fut = pool.submit(
                    _build_node, store, node, apps, parent_layers, results, options, rep, runner
                )
                running[fut] = key
        if not running:
            break
        done, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for fut in done:
            key = running.pop(fut)
            results[key] = fut.result()
            rep.node_finished(graph.node(key), graph.apps_of(key), results[key])


def _cached(store: Store, node: LayerNode, parent_layers: tuple[str, ...]) -> NodeResult | None:
    if node.kind == "base":
        return None  # settled in the pool: it reads the manifest
    diff_id = store.lookup(node.key)
    if diff_id is None:
        return None
    return NodeResult(node.key, "cached", (*parent_layers, diff_id))


def _build_node(
    store: Store,
    node: LayerNode,
    apps: frozenset[str],
    parent_layers: tuple[str, ...],
    results: Mapping[str, NodeResult],
    options: BuildOptions,
    rep: Reporter,
    runner: StepRunner,
) -> NodeResult:
    source_layers = results[node.copy_from].layers if node.copy_from else ()
    return build_node(
        store,
        node,
        apps,
        parent_layers,
        source_layers,
        options,
        lambda line: rep.node_output(node, line),
        runner,
    )


def build_node(
    store: Store,
    node: LayerNode,
    apps: frozenset[str],
    parent_layers: tuple[str, ...],
    source_layers: tuple[str, ...],
    options: BuildOptions,
    on_output: Callable[[str], None],
    runner: StepRunner,
    selection: Sequence[Entry] | None = None,
) -> NodeResult:
    """Build one node into ``store`` on top of ``parent_layers`` (diff_ids, bottom
    first, all in the store; ``source_layers`` likewise for a COPY --from): settle a
    base, re-check the store under the key's lock, try ``options.cache_from``, else
    run the step in a staging dir, commit the layer and record the key. The one
    node-building path of local builds and cluster workers, so both give the same
    diff_id. ``selection``: a build-context COPY's entries as selected elsewhere (see
    ``copier.run_copy``). Never raises for a failing step (a ``failed`` result naming
    ``apps``)."""
    started = time.monotonic()
    try:
        if node.kind == "base":
            return _base_node(store, node)
        with store.key_lock(node.key):
            fresh = node.key in options.rebuild
            diff_id = None if fresh else store.lookup(node.key)  # built meanwhile?
            if diff_id is not None:
                return NodeResult(node.key, "cached", (*parent_layers, diff_id))
            if options.cache_from is not None and not fresh:
                diff_id = options.cache_from.fetch(node.key, store)
                if diff_id is not None:
                    seconds = time.monotonic() - started
                    store.record(node.key, diff_id, node.label, seconds)
                    return NodeResult(
                        node.key,
                        "pulled",
                        (*parent_layers, diff_id),
                        seconds,
                        store.layer_size(diff_id),
                    )
            with store.staging() as staging:
                layer = staging.path / "layer"
                if isinstance(node.step, Run):
                    _run_step(
                        store, node, parent_layers, staging.path, layer, options, on_output, runner
                    )
                elif isinstance(node.step, Copy):
                    _copy_step(store, node, parent_layers, source_layers, layer, selection)
                else:
                    raise AssertionError(f"node {node.key} has no step")
                from pipeline.fs.tarwrite import layer_info

                info = layer_info(layer, options.epoch)
                store.commit_layer(layer, info.diff_id, info.size, options.epoch)
            seconds = time.monotonic() - started
            store.record(node.key, info.diff_id, node.label, seconds)
            return NodeResult(node.key, "built", (*parent_layers, info.diff_id), seconds, info.size)
    except _StepFailed as exc:
        failure = StepFailure(
            tuple(sorted(apps)), node.label, _loc(node), exc.exit_code, exc.tail, exc.reason
        )
        return NodeResult(node.key, "failed", (), time.monotonic() - started, failure=failure)
    except Exception as exc:  # a broken step must not take the other branches down
        failure = StepFailure(
            tuple(sorted(apps)), node.label, _loc(node), None, (), f"{type(exc).__name__}: {exc}"
        )
        return NodeResult(node.key, "failed", (), time.monotonic() - started, failure=failure)


def _loc(node: LayerNode) -> Location | None:
    if node.step is not None:
        return node.step.loc
    return node.base.loc if node.base else None


def _base_node(store: Store, node: LayerNode) -> NodeResult:
    ref = node.base.ref if node.base else "?"
    if not node.resolved:
        raise _StepFailed(
            None,
            (),
            f"base image {ref!r} is not in the store "
            "(add it with `pipeline import`, `pipeline bootstrap` or `pipeline pull`)",
        )
    layers = store.manifest_layers(node.base_digest)
    for diff_id, _ in layers:
        if not store.has_layer(diff_id):
            raise StoreError(f"{store.root}: base {ref}: layer {diff_id} is missing")
    return NodeResult(node.key, "cached", tuple(d for d, _ in layers))


def _lowerdirs(store: Store, layers: Sequence[str]) -> list[Path]:
    return [store.layer_path(d) for d in reversed(layers)]


def _run_step(
    store: Store,
    node: LayerNode,
    parent_layers: tuple[str, ...],
    scratch: Path,
    layer: Path,
    options: BuildOptions,
    on_output: Callable[[str], None],
    runner: StepRunner,
) -> None:
    step = node.step
    assert isinstance(step, Run)
    binds = []
    env = with_epoch_env(node.env, options.epoch)
    if options.ca_bundle is not None:
        binds.append(BindMount(options.ca_bundle, CA_TARGET, readonly=True))
        env = _with_ca_env(env)
    for mount in step.mounts:
        if mount.type == "cache":
            source = store.cache_mount_dir(mount.id or mount.target)
            binds.append(BindMount(source, mount.target, readonly=False))
        else:
            binds.append(BindMount(Path(mount.source), mount.target, readonly=True))
    argv = ("/bin/sh", "-c", step.command) if isinstance(step.command, str) else step.command
    spec = RunSpec(
        argv=tuple(argv),
        env=env,
        workdir=node.workdir,
        user=node.user,
        network=step.network,
        binds=tuple(binds),
    )
    layer.mkdir()
    work = scratch / "work"
    work.mkdir()
    lowers = _lowerdirs(store, parent_layers)
    if not lowers:
        empty = scratch / "empty"
        empty.mkdir()
        lowers = [empty]
    result = runner.run_step(lowers, layer, work, spec, on_output=on_output)
    if result.exit_code != 0:
        raise _StepFailed(result.exit_code, result.output_tail)


CA_TARGET = "/run/pipeline/ca-certificates.crt"
CA_VARIABLES = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def _with_ca_env(env: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The step's env plus the CA bundle variables (never part of a cache key)."""
    out = dict(env)
    for name in CA_VARIABLES:
        out.setdefault(name, CA_TARGET)
    return tuple(sorted(out.items()))


def with_epoch_env(env: tuple[tuple[str, str], ...], epoch: int) -> tuple[tuple[str, str], ...]:
    """The step's env plus ``SOURCE_DATE_EPOCH`` (the build's epoch), unless the step
    sets its own: tools that honour it (pip's byte-compiling, gzip, ...) then write the
    same bytes on every build. Like the CA variables, never part of a cache key."""
    if any(name == "SOURCE_DATE_EPOCH" for name, _ in env):
        return env
    return tuple(sorted((*env, ("SOURCE_DATE_EPOCH", str(epoch)))))


def default_ca_bundle(environ: Mapping[str, str]) -> Path | None:
    """The CA bundle the host's own tools are configured with, if any: PIPELINE_CA_BUNDLE,
    PIP_CERT, SSL_CERT_FILE, REQUESTS_CA_BUNDLE (first that names an existing file)."""
    for name in ("PIPELINE_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    return None


def _copy_step(
    store: Store,
    node: LayerNode,
    parent_layers: tuple[str, ...],
    source_layers: tuple[str, ...],
    layer: Path,
    selection: Sequence[Entry] | None = None,
) -> None:
    """Make the COPY layer, and refuse it when the bytes copied are not the ones its key
    was computed from (a file edited between planning and copying): the layer would
    otherwise be stored under a stale key."""
    from pipeline.fs import copier

    step = node.step
    assert isinstance(step, Copy)
    layer.mkdir()
    copied = copier.run_copy(
        step,
        layer,
        _lowerdirs(store, parent_layers),
        _lowerdirs(store, source_layers) if step.from_image else None,
        node.workdir,
        selection,
        user=node.user,
    )
    if copied is not None and node.content and copied != node.content:
        sources = " ".join(step.sources)
        raise _StepFailed(None, (), f"COPY {sources}: changed during the build; run again")


def _write_image(store: Store, plan: ImagePlan, results: Mapping[str, NodeResult]) -> ImageResult:
    layers = results[plan.top].layers if plan.top else ()
    return write_image(store, plan, tuple((d, store.layer_size(d)) for d in layers))


def write_image(store: Store, plan: ImagePlan, sizes: tuple[tuple[str, int], ...]) -> ImageResult:
    """Write ``plan``'s config and manifest over the layers ``sizes`` ((diff_id, tar
    size), bottom first) and point its id and tags at it. The layers need not be in
    ``store`` (a cluster build keeps them in its registry)."""
    history = _history(plan.history, len(sizes))
    config = image_config_blob(plan.config, [d for d, _ in sizes], history)
    store.put_blob(config)
    manifest = manifest_blob(config.descriptor, [Descriptor(MT_LAYER, d, s) for d, s in sizes])
    digest = store.put_blob(manifest)
    names = (plan.id, *plan.tags)
    for name in names:
        store.tag(name, digest)
    return ImageResult(plan.id, digest, names, sizes)


def _history(entries: Sequence[HistoryEntry], n_layers: int) -> list[HistoryEntry]:
    """History with exactly ``n_layers`` non-empty entries (pads base layers)."""
    non_empty = sum(1 for h in entries if not h.empty_layer)
    missing = n_layers - non_empty
    pad = [HistoryEntry("base layer", False)] * max(0, missing)
    return [*pad, *entries]
