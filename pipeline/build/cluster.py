"""Building a fleet on a Dask cluster: the client side. The only importer of Dask
(with :mod:`pipeline.build.cluster_worker`, which the workers run).

The client compiles the fleet as for a local build, then:

1. settles what it can without the cluster: bases from its store, and every node
   whose layer the shared layer store already has (its own store for ``local:N``;
   the cache repository's entries for a remote cluster, looked up in parallel). A
   no-op build ends here, without starting or contacting a cluster;
2. for a remote cluster, makes the inputs workers will need present in the cache
   repository: the base layers under the nodes to build, and each build context by
   its content digest (:mod:`pipeline.build.contexts`), each uploaded once;
3. submits one task per remaining node and per ancestor of one (an ancestor already
   settled is a task that only passes its layer on), with its parent's and COPY
   --from source's tasks as dependencies, under a Dask key made of the cache key and
   the layer store, so two clients of one scheduler building overlapping fleets share
   one task per node; the priority is the node's height (the longest chain of nodes
   below it), so the longest remaining path starts first;
4. reports progress from the workers' events (which worker runs which step) and each
   finished task, and writes each image's config and manifest to its store. For a
   remote cluster no layer bytes come to the client: the images' layers stay in the
   cache repository.

Placement is Dask's: a task goes to a worker that holds its dependencies' results,
i.e. the worker that built (and so holds) the parent layer, unless work stealing
moves it to an idle worker, which then fetches the parent layers it lacks.

Ctrl-C (or any exception) cancels this client's tasks; workers kill the steps no
client wants any more, and a ``local:N`` cluster is shut down.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipeline.build.cluster_worker import Done, Layer, LayerStore, NodeTask, run_node
from pipeline.build.executor import (
    DONE,
    BuildOptions,
    BuildResult,
    NodeResult,
    NullReporter,
    Outcome,
    Reporter,
    build_node,
    write_image,
)
from pipeline.digest import hex_of
from pipeline.errors import Location, PipelineError, StepFailure, UsageError
from pipeline.graph import BuildGraph, LayerNode
from pipeline.model import Copy
from pipeline.store import Store

_LOCAL = re.compile(r"local:([1-9][0-9]{0,3})")
_REMOTE = re.compile(r"(tcp|tls)://[^\s/]+:[0-9]{1,5}")


class ClusterError(PipelineError):
    """The cluster cannot be reached or used (one line, naming the address)."""

    exit_code = 1


@dataclass(frozen=True)
class ClusterOptions:
    """``--cluster``: ``local:N`` (N worker processes on this machine sharing its
    store) or ``tcp://HOST:PORT`` / ``tls://HOST:PORT`` (a running Dask scheduler).
    ``jobs`` (``-j``): steps each worker runs at once (``local:N`` default: the CPUs
    shared out; a remote worker's default: its threads). ``insecure``: plain HTTP to
    the registry (as ``--insecure``), passed to the workers. ``stream``: send each
    step's output lines to the client (``-v``)."""

    address: str
    jobs: int | None = None
    insecure: bool = False
    stream: bool = False

    @property
    def local_workers(self) -> int:
        m = _LOCAL.fullmatch(self.address)
        return int(m.group(1)) if m else 0


def parse_cluster(text: str) -> str:
    """The ``--cluster`` value, checked; UsageError naming it otherwise."""
    if _LOCAL.fullmatch(text) or _REMOTE.fullmatch(text):
        return text
    raise UsageError(
        f"--cluster {text}: expected local:N (N worker processes here) or "
        "tcp://HOST:PORT (a Dask scheduler)"
    )


def build(
    graph: BuildGraph,
    store: Store,
    targets: Sequence[str],
    options: BuildOptions,
    cluster: ClusterOptions,
    reporter: Reporter | None = None,
) -> BuildResult:
    """Build ``targets`` on ``cluster`` (module docstring); the same contract as
    ``executor.build``: step failures are in the result, exceptions (an unreachable
    cluster, Ctrl-C) propagate after this client's tasks are cancelled."""
    rep = reporter or NullReporter()
    started = time.monotonic()
    local = cluster.local_workers > 0
    cache = options.cache_to
    if not local and cache is None:
        raise UsageError(
            f"--cluster {cluster.address}: the workers share layers through a registry: "
            "give --cache-to REGISTRY/REPO"
        )
    if not local and options.cache_from is not None and options.cache_from is not cache:
        raise UsageError(
            f"--cluster {cluster.address}: --cache-from must name the --cache-to repository "
            "(the cluster's one shared layer store)"
        )
    need = graph.closure(targets)
    if any(graph.node(k).kind == "stack" for k in need):
        raise UsageError(
            f"--cluster {cluster.address}: factored pip layers are not built on a cluster "
            "yet: build with --no-factoring (or locally)"
        )
    order = [k for k in graph.order() if k in need]
    rep.begin(graph, order)
    results: dict[str, NodeResult] = {}
    chains: dict[str, tuple[Layer, ...]] = {}
    session = _Session(cluster)
    try:
        with store.gc_lock():
            _settle(graph, store, order, options, local, rep, results, chains)
            todo = [k for k in order if k not in results]
            if todo:
                layers = _layer_store(store, options, cluster, local)
                if not local:
                    _prepare_inputs(graph, store, todo, chains, options, results, rep)
                    todo = [k for k in todo if k not in results]
                _run(graph, order, todo, chains, layers, session, rep, results)
            images = {}
            for target in targets:
                plan = graph.images[target]
                if all(results[k].outcome in DONE for k in plan.nodes):
                    top = chains[plan.top] if plan.top else ()
                    images[target] = write_image(store, plan, top)
    except BaseException:
        session.cancel()
        with contextlib.suppress(Exception):
            partial = tuple(r.failure for r in results.values() if r.failure is not None)
            rep.end(BuildResult(results, {}, partial, time.monotonic() - started, ()))
        raise
    finally:
        session.close()
    if local and cache is not None:
        entries = [
            (k, r.layers[-1])
            for k, r in results.items()
            if r.outcome in DONE and graph.node(k).kind != "base" and r.layers
        ]
        cache.publish(entries, store)
    failures = tuple(r.failure for r in results.values() if r.failure is not None)
    result = BuildResult(results, images, failures, time.monotonic() - started, tuple(targets))
    rep.end(result)
    return result


# -- 1. what the client settles itself ---------------------------------------------------


def _settle(
    graph: BuildGraph,
    store: Store,
    order: Sequence[str],
    options: BuildOptions,
    local: bool,
    rep: Reporter,
    results: dict[str, NodeResult],
    chains: dict[str, tuple[Layer, ...]],
) -> None:
    """Bases, then every node whose layer is already shared and whose inputs are too."""
    non_base = [k for k in order if graph.node(k).kind != "base"]
    known = _known_local(store, non_base) if local else _known_remote(store, non_base, options)
    for key in order:
        node = graph.node(key)
        if node.kind == "base":
            r = build_node(store, node, graph.apps_of(key), (), (), options, _ignore, _NoRunner())
            if r.outcome in DONE:
                chains[key] = tuple(store.manifest_layers(node.base_digest))
            results[key] = r
            rep.node_finished(node, graph.apps_of(key), r)
            continue
        preds = graph.predecessors(key)
        if any(p in results and p not in chains for p in preds):
            results[key] = NodeResult(key, "skipped")
            rep.node_finished(node, graph.apps_of(key), results[key])
            continue
        if key not in known or any(p not in chains for p in preds):
            continue
        parent = chains[node.parent] if node.parent else ()
        chains[key] = (*parent, known[key])
        results[key] = NodeResult(key, "cached", tuple(d for d, _ in chains[key]))
        rep.node_finished(node, graph.apps_of(key), results[key])


def _ignore(line: str) -> None:
    pass


class _NoRunner:
    """The runner given to ``build_node`` for base nodes, which never run a step."""

    def check_host(self) -> None:
        pass

    def run_step(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a base node runs no step")

    def stop(self) -> int:
        return 0


def _known_local(store: Store, keys: Sequence[str]) -> dict[str, Layer]:
    out = {}
    for key in keys:
        diff_id = store.lookup(key)
        if diff_id is not None:
            out[key] = (diff_id, store.layer_size(diff_id))
    return out


def _known_remote(store: Store, keys: Sequence[str], options: BuildOptions) -> dict[str, Layer]:
    """The nodes whose cache entries the repository has (uncompressed ones: their tar
    size is the blob's). A node the client's own store has but the repository lacks is
    published first, so the workers can use it."""
    cache: Any = options.cache_to
    if not keys:
        return {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        hits = list(pool.map(lambda k: cache.lookup(k, store), keys))
    out: dict[str, Layer] = {}
    mine = []
    for key, hit in zip(keys, hits, strict=True):
        if hit is not None and hit.size is not None:
            out[key] = (hit.diff_id, hit.size)
        elif hit is None and (diff_id := store.lookup(key)) is not None:
            mine.append((key, diff_id))
            out[key] = (diff_id, store.layer_size(diff_id))
    if mine:
        cache.publish(mine, store)
    return out


# -- 2. inputs the workers need ----------------------------------------------------------


def _prepare_inputs(
    graph: BuildGraph,
    store: Store,
    todo: Sequence[str],
    chains: Mapping[str, tuple[Layer, ...]],
    options: BuildOptions,
    results: dict[str, NodeResult],
    rep: Reporter,
) -> None:
    """Upload the base layers under ``todo`` and their build contexts, once each. A
    context that changed since planning fails its node (and so its descendants)."""
    from pipeline.build import contexts
    from pipeline.build.push import BlobPusher

    cache: Any = options.cache_to
    client = cache.client
    repo = cache.ref.repository
    bases = {k for key in todo for k in _ancestors(graph, key) if graph.node(k).kind == "base"}
    pusher = BlobPusher(cache.registries, store, "none")
    blobs = {layer for b in bases for layer in chains.get(b, ())}
    copies = [
        k
        for k in todo
        if isinstance((step := graph.node(k).step), Copy)
        and step.from_image is None
        and graph.node(k).content
    ]

    def push_blob(layer: Layer) -> None:
        diff_id, size = layer
        blob, produce = pusher.layer(diff_id, size, options.epoch)
        pusher.ensure(client, repo, blob.descriptor.digest, blob.descriptor.size, produce)

    def push_context(key: str) -> str | None:
        node = graph.node(key)
        assert isinstance(node.step, Copy)
        try:
            contexts.upload(cache, node.step, node.content, store)
        except contexts.ContextChanged as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(push_blob, sorted(blobs)))
        changed = dict(zip(copies, pool.map(push_context, copies), strict=True))
    for key, reason in changed.items():
        if reason is not None:
            node = graph.node(key)
            apps = graph.apps_of(key)
            failure = StepFailure(tuple(sorted(apps)), node.label, _loc(node), None, (), reason)
            results[key] = NodeResult(key, "failed", failure=failure)
            rep.node_finished(node, apps, results[key])


def _ancestors(graph: BuildGraph, key: str) -> Iterator[str]:
    stack = [key]
    seen = set()
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        yield k
        stack.extend(graph.predecessors(k))


def _loc(node: LayerNode) -> Location | None:
    if node.step is not None:
        return node.step.loc
    return node.base.loc if node.base else None


def _layer_store(
    store: Store, options: BuildOptions, cluster: ClusterOptions, local: bool
) -> LayerStore:
    def repo_of(cache: Any) -> str:
        return f"{cache.ref.registry}/{cache.ref.repository}" if cache is not None else ""

    if local:
        return LayerStore(
            shared_store=str(store.root),
            repository=repo_of(options.cache_from),
            insecure=cluster.insecure,
            epoch=options.epoch,
            ca_bundle=str(options.ca_bundle) if options.ca_bundle else "",
            stream=cluster.stream,
        )
    return LayerStore(
        repository=repo_of(options.cache_to),
        insecure=cluster.insecure,
        epoch=options.epoch,
        jobs=cluster.jobs or 0,
        stream=cluster.stream,
    )


# -- 3. and 4. tasks on the cluster ---------------------------------------------------------


def dask_key(node: LayerNode, layers: LayerStore) -> str:
    """The Dask key of a node's task: its kind, its cache key and the layer store
    (so one scheduler shares a task only between builds that share layers)."""
    where = layers.shared_store or layers.repository
    tag = hashlib.sha256(f"{where}\0{layers.epoch}".encode()).hexdigest()[:12]
    return f"pipeline-{node.kind}-{hex_of(node.key)}-{tag}"


def heights(graph: BuildGraph, keys: Sequence[str]) -> dict[str, int]:
    """For each node of ``keys`` (topologically ordered), the number of nodes on the
    longest chain from it down to a node nothing in ``keys`` depends on."""
    inside = set(keys)
    children: dict[str, list[str]] = {k: [] for k in keys}
    for k in keys:
        for p in graph.predecessors(k):
            if p in inside:
                children[p].append(k)
    out: dict[str, int] = {}
    for k in reversed(keys):
        out[k] = 1 + max((out[c] for c in children[k]), default=0)
    return out


def _run(
    graph: BuildGraph,
    order: Sequence[str],
    todo: Sequence[str],
    chains: dict[str, tuple[Layer, ...]],
    layers: LayerStore,
    session: _Session,
    rep: Reporter,
    results: dict[str, NodeResult],
) -> None:
    wanted = {a for k in todo for a in _ancestors(graph, k) if graph.node(a).kind != "base"}
    tasks = [k for k in order if k in wanted and not (k in results and k not in chains)]
    height = heights(graph, [k for k in order if k in wanted])
    client = session.connect()
    futures: dict[str, Any] = {}
    by_dask_key: dict[str, str] = {}

    def on_event(event: tuple[float, Any]) -> None:
        msg = event[1]
        key = by_dask_key.get(msg.get("key", "")) if isinstance(msg, dict) else None
        if key is None:
            return
        node = graph.node(key)
        if msg.get("event") == "started":
            rep.node_started(node, graph.apps_of(key))
        elif msg.get("event") == "output":
            rep.node_output(node, str(msg.get("line", "")))

    client.subscribe_topic("pipeline", on_event)  # before submitting: no event missed
    for key in tasks:
        node = graph.node(key)
        args: list[Any] = []
        for pred in (node.parent, node.copy_from):
            if pred is None:
                args.append(None)
            elif pred in futures:
                args.append(futures[pred])
            elif pred in chains:
                args.append(Done(pred, "cached", chains[pred]))
            else:  # a base that failed, or an input that failed before the cluster
                args.append(Done(pred, "failed"))
        known = chains[key][-1] if key in chains else None
        task = NodeTask(node, layers, known)
        dkey = dask_key(node, layers)
        by_dask_key[dkey] = key
        futures[key] = client.submit(
            run_node, task, *args, key=dkey, priority=height[key], pure=False
        )

    as_completed = _dask().as_completed
    pending = {f: k for k, f in futures.items()}
    for fut in as_completed(list(futures.values()), loop=client.loop):
        key = pending.pop(fut)
        if key in results:  # settled before: its task only handed its layer on
            continue
        node = graph.node(key)
        apps = graph.apps_of(key)
        result, chain = _result_of(fut, key, node, apps, graph, results)
        if chain is not None:
            chains[key] = chain
        results[key] = result
        rep.node_finished(node, apps, result)


def _result_of(
    fut: Any,
    key: str,
    node: LayerNode,
    apps: frozenset[str],
    graph: BuildGraph,
    results: Mapping[str, NodeResult],
) -> tuple[NodeResult, tuple[Layer, ...] | None]:
    """The node's result and, when it is done, its chain of layers."""
    try:
        done: Done = fut.result()
    except Exception as exc:  # the task itself broke (e.g. its workers kept dying)
        if any(p in results and results[p].outcome not in DONE for p in graph.predecessors(key)):
            return NodeResult(key, "skipped"), None
        reason = f"on the cluster: {type(exc).__name__}: {exc}"
        failure = StepFailure(tuple(sorted(apps)), node.label, _loc(node), None, (), reason)
        return NodeResult(key, "failed", failure=failure), None
    if done.ok:
        diff_ids = tuple(d for d, _ in done.layers)
        outcome: Outcome = "built" if done.outcome == "built" else "cached"
        result = NodeResult(key, outcome, diff_ids, done.seconds, done.size, worker=done.worker)
        return result, done.layers
    if done.outcome == "skipped":
        return NodeResult(key, "skipped", worker=done.worker), None
    failure = StepFailure(
        tuple(sorted(apps)), node.label, _loc(node), done.exit_code, done.tail, done.reason
    )
    return NodeResult(key, "failed", (), done.seconds, failure=failure, worker=done.worker), None


# -- the Dask session ----------------------------------------------------------------------


def _dask() -> Any:
    """``distributed``, imported when a cluster is first used (a no-op never pays)."""
    import importlib

    return importlib.import_module("distributed")


class _Session:
    """A Dask client (and, for ``local:N``, its LocalCluster), made on first use."""

    def __init__(self, cluster: ClusterOptions) -> None:
        self.options = cluster
        self.client: Any = None
        self.cluster: Any = None

    def connect(self) -> Any:
        if self.client is not None:
            return self.client
        import dask

        Client = _dask().Client
        logging.getLogger("distributed").setLevel(logging.ERROR)
        n = self.options.local_workers
        try:
            if n:
                threads = self.options.jobs or max(1, (os.cpu_count() or 1) // n)
                # fork: a worker starts in ~0.1 s instead of ~1 s for a fresh interpreter;
                # stealing every 100 ms (not 1 s): an idle worker takes a queued step soon
                # after a fan-out put its siblings on the parent's worker
                settings = {
                    "distributed.worker.multiprocessing-method": "fork",
                    "distributed.scheduler.work-stealing-interval": "100ms",
                }
                with dask.config.set(settings):
                    self.cluster = _dask().LocalCluster(
                        n_workers=n,
                        threads_per_worker=threads,
                        processes=True,
                        dashboard_address=None,
                        silence_logs=logging.ERROR,
                    )
                self.client = Client(self.cluster, set_as_default=False)
            else:
                self.client = Client(self.options.address, timeout=10, set_as_default=False)
                info = self.client.scheduler_info()
                if not info.get("workers"):
                    self.client.wait_for_workers(1, timeout=30)
        except OSError as exc:
            raise ClusterError(f"--cluster {self.options.address}: {exc}") from None
        except TimeoutError:
            raise ClusterError(
                f"--cluster {self.options.address}: the scheduler has no workers"
            ) from None
        return self.client

    def cancel(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                futures = list(self.client.futures.values())
                self.client.cancel(futures)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.client is not None:
                self.client.close(timeout=5)
        with contextlib.suppress(Exception):
            if self.cluster is not None:
                self.cluster.close(timeout=5)
        self.client = self.cluster = None
