"""What a Dask worker runs for a cluster build: one task per layer node.

A task gets its :class:`NodeTask` and its inputs' results (:class:`Done`, from the
tasks of its parent and COPY --from source, or given by the client for a base) and
returns a :class:`Done`. It never raises for a failing step: a failed or skipped
input makes it ``skipped``, a failing step or a broken registry makes it ``failed``.

Two ways of sharing layers (``LayerStore``):

* **shared store** (``--cluster local:N``): the workers are processes on the client's
  machine and build straight into the client's store (safe for several processes:
  per-key locks, atomic commits). ``pull_from`` is ``--cache-from``, tried first.
* **registry** (``--cluster tcp://...``): each worker has its own store
  (``PIPELINE_STORE`` of the worker). A node whose cache entry is in the repository is
  done without fetching anything; otherwise the worker fetches the parent layers (and
  the build context) it lacks from the repository, every blob verified by digest,
  builds the step through :func:`pipeline.build.executor.build_node` (the same code
  as a local build, hence the same diff_id), and publishes the layer, then its cache
  entry (blobs first, so no entry ever names a missing blob).

Each node a worker builds is recorded in its own store's build history (command
``cluster task KEY``), which is how one can count where nodes were built.

Cancellation: while a step runs, a watcher polls the worker's state of the task; once
no client wants it any more (Ctrl-C on the client, which cancels its futures), the
step's sandbox is killed and nothing is committed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.build.executor import DONE, BuildOptions, NodeResult, build_node, default_ca_bundle
from pipeline.digest import DiffID
from pipeline.errors import SandboxError
from pipeline.graph import LayerNode
from pipeline.model import Copy
from pipeline.sandbox.api import RunResult, RunSpec
from pipeline.store import Store, default_store_path

Layer = tuple[DiffID, int]  # (diff_id, tar size)


@dataclass(frozen=True)
class LayerStore:
    """Where a cluster build's layers are shared, as the workers see it (see the
    module docstring). ``jobs`` caps the steps one worker runs at once (0: as many
    as it has threads)."""

    shared_store: str = ""
    repository: str = ""
    insecure: bool = False
    epoch: int = 0
    ca_bundle: str = ""
    jobs: int = 0
    stream: bool = False

    @property
    def registry_mode(self) -> bool:
        return not self.shared_store


@dataclass(frozen=True)
class NodeTask:
    """One layer node to settle. ``known``: the client already found the node's layer
    (a cache hit), so the task only passes it on to its children."""

    node: LayerNode
    layers: LayerStore
    known: Layer | None = None


@dataclass(frozen=True)
class Done:
    """A task's result. ``layers``: the chain through this node, bottom first, with
    tar sizes. ``outcome`` as in ``NodeResult``; ``worker`` is the address of the
    worker that settled it."""

    key: str
    outcome: str
    layers: tuple[Layer, ...] = ()
    seconds: float = 0.0
    size: int = 0
    worker: str = ""
    exit_code: int | None = None
    tail: tuple[str, ...] = ()
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in DONE


def run_node(task: NodeTask, parent: Done | None, source: Done | None) -> Done:
    """The Dask task of one node (module docstring)."""
    node = task.node
    worker = _worker_address()
    if any(d is not None and not d.ok for d in (parent, source)):
        return Done(node.key, "skipped", worker=worker)
    parent_layers = parent.layers if parent is not None else ()
    source_layers = source.layers if source is not None else ()
    if task.known is not None:
        return Done(node.key, "cached", (*parent_layers, task.known), worker=worker)
    started = time.monotonic()
    try:
        ctx = _context(task.layers)
        if task.layers.registry_mode:
            return _registry_node(ctx, task, parent_layers, source_layers, worker, started)
        return _shared_node(ctx, task, parent_layers, source_layers, worker, started)
    except Exception as exc:  # a broken registry or store fails this node only
        reason = f"{type(exc).__name__}: {exc}"
        return Done(
            node.key, "failed", (), time.monotonic() - started, worker=worker, reason=reason
        )


# -- the two ways of sharing ---------------------------------------------------------------


def _shared_node(
    ctx: _Context,
    task: NodeTask,
    parent_layers: tuple[Layer, ...],
    source_layers: tuple[Layer, ...],
    worker: str,
    started: float,
) -> Done:
    node = task.node
    store = ctx.store
    diff_id = store.lookup(node.key)
    if diff_id is not None:
        return Done(node.key, "cached", (*parent_layers, (diff_id, store.layer_size(diff_id))))
    with _slot(task.layers.jobs):
        result = _build(ctx, task, parent_layers, source_layers, None, worker)
    return _done(ctx, result, parent_layers, worker, started)


def _registry_node(
    ctx: _Context,
    task: NodeTask,
    parent_layers: tuple[Layer, ...],
    source_layers: tuple[Layer, ...],
    worker: str,
    started: float,
) -> Done:
    node = task.node
    store = ctx.store
    cache = ctx.cache
    assert cache is not None
    hit = cache.lookup(node.key)
    if hit is not None and hit.size is not None:
        layer = (hit.diff_id, hit.size)
        return Done(node.key, "cached", (*parent_layers, layer), worker=worker)
    with _slot(task.layers.jobs):
        if hit is not None:  # a compressed entry: its tar size is known once fetched
            cache.fetch(node.key, store)
            size = store.layer_size(hit.diff_id)
            return Done(node.key, "cached", (*parent_layers, (hit.diff_id, size)), worker=worker)
        diff_id = store.lookup(node.key)
        if diff_id is None:
            for layer in (*parent_layers, *source_layers):
                _ensure_layer(ctx, layer)
            if isinstance(node.step, Copy) and node.step.from_image is None and node.content:
                result = _build_copy(ctx, task, parent_layers, worker)
            else:
                result = _build(ctx, task, parent_layers, source_layers, None, worker)
            if result.outcome != "built":
                return _done(ctx, result, parent_layers, worker, started)
            diff_id = result.layers[-1]
        cache.publish([(node.key, diff_id)], store)
        result = NodeResult(
            node.key,
            "built",
            (*(d for d, _ in parent_layers), diff_id),
            time.monotonic() - started,
            store.layer_size(diff_id),
        )
        return _done(ctx, result, parent_layers, worker, started)


def _build_copy(
    ctx: _Context, task: NodeTask, parent_layers: tuple[Layer, ...], worker: str
) -> NodeResult:
    from pipeline.build import contexts

    assert ctx.cache is not None
    with ctx.store.staging() as staging:
        selection = contexts.fetch(ctx.cache, task.node.content, staging.path)
        return _build(ctx, task, parent_layers, (), selection, worker)


def _build(
    ctx: _Context,
    task: NodeTask,
    parent_layers: tuple[Layer, ...],
    source_layers: tuple[Layer, ...],
    selection: Sequence[Any] | None,
    worker: str,
) -> NodeResult:
    node = task.node
    _event({"event": "started", "key": _current_key(), "worker": worker})
    runner = _TaskRunner()
    stream = task.layers.stream
    key = _current_key()

    def on_output(line: str) -> None:
        if runner.stopped.is_set():
            raise SandboxError("sandbox: the task was cancelled")
        if stream:
            _event({"event": "output", "key": key, "line": line})

    options = BuildOptions(
        jobs=1,
        epoch=task.layers.epoch,
        ca_bundle=ctx.ca_bundle,
        cache_from=None if task.layers.registry_mode else ctx.cache,
    )
    with _watch(runner):
        result = build_node(
            ctx.store,
            node,
            frozenset(),
            tuple(d for d, _ in parent_layers),
            tuple(d for d, _ in source_layers),
            options,
            on_output,
            runner,
            selection,
        )
    if result.outcome == "built" and task.layers.registry_mode:
        _record(ctx.store, node, result, key)
    return result


def _done(
    ctx: _Context, result: NodeResult, parent_layers: tuple[Layer, ...], worker: str, started: float
) -> Done:
    seconds = time.monotonic() - started
    if result.outcome not in DONE:
        f = result.failure
        return Done(
            result.key,
            result.outcome,
            (),
            seconds,
            worker=worker,
            exit_code=f.exit_code if f else None,
            tail=f.output_tail if f else (),
            reason=f.reason if f else "",
        )
    diff_id = result.layers[-1]
    size = ctx.store.layer_size(diff_id)
    layers = (*parent_layers, (diff_id, size))
    return Done(result.key, result.outcome, layers, seconds, result.size, worker)


def _ensure_layer(ctx: _Context, layer: Layer) -> None:
    """Fetch a layer the worker's store lacks from the repository (where the client
    put the base layers and workers publish theirs, uncompressed: digest = diff_id)."""
    diff_id, size = layer
    if ctx.store.has_layer(diff_id):
        return
    assert ctx.cache is not None
    from pipeline.oci.media import MT_LAYER

    with ctx.store.key_lock(diff_id):
        if not ctx.store.has_layer(diff_id):
            desc = {"mediaType": MT_LAYER, "digest": diff_id, "size": size}
            ctx.cache.fetch_layer(desc, diff_id, ctx.store)


def _record(store: Store, node: LayerNode, result: NodeResult, key: str) -> None:
    build_id = store.begin_build(f"cluster task {key}")
    diff_id = result.layers[-1] if result.layers else None
    store.record_node(build_id, node.key, node.label, "", "built", result.seconds, diff_id)
    store.end_build(build_id, "ok", {"built": 1})


# -- per-process state on a worker ----------------------------------------------------------


@dataclass
class _Context:
    store: Store
    cache: Any  # RegistryCache | None
    ca_bundle: Path | None


_contexts: dict[tuple[str, str, bool, int], _Context] = {}
_contexts_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


def _context(layers: LayerStore) -> _Context:
    root = layers.shared_store or str(default_store_path())
    ident = (root, layers.repository, layers.insecure, layers.epoch)
    with _contexts_lock:
        ctx = _contexts.get(ident)
        if ctx is None:
            cache = None
            if layers.shared_store:
                bundle = Path(layers.ca_bundle) if layers.ca_bundle else None
            else:
                bundle = default_ca_bundle(os.environ)
            if layers.repository:
                from pipeline.build.cache import RegistryCache
                from pipeline.registry.client import Registries

                registries = Registries(insecure=layers.insecure, ca_bundle=bundle)
                cache = RegistryCache(registries, layers.repository, epoch=layers.epoch)
            ctx = _contexts[ident] = _Context(Store(Path(root)), cache, bundle)
        return ctx


@contextlib.contextmanager
def _slot(jobs: int) -> Iterator[None]:
    if jobs <= 0:
        yield
        return
    with _contexts_lock:
        sem = _slots.setdefault(jobs, threading.BoundedSemaphore(jobs))
    with sem:
        yield


def _worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except ValueError:  # not on a worker (unit tests call run_node directly)
        return None


def _worker_address() -> str:
    w = _worker()
    return str(w.address) if w is not None else ""


def _current_key() -> str:
    w = _worker()
    return str(w.get_current_task()) if w is not None else ""


def _event(msg: dict[str, Any]) -> None:
    w = _worker()
    if w is not None:
        w.log_event("pipeline", msg)


def _wanted(worker: Any, key: str) -> bool:
    ts = worker.state.tasks.get(key)
    return ts is not None and ts.state not in ("cancelled", "released", "forgotten")


@contextlib.contextmanager
def _watch(runner: _TaskRunner) -> Iterator[None]:
    """Stop ``runner``'s step once no client wants the running task any more."""
    worker = _worker()
    if worker is None:
        yield
        return
    key = worker.get_current_task()
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.25):
            if not _wanted(worker, key):
                runner.stop()
                return

    thread = threading.Thread(target=poll, name=f"pipeline-watch-{key}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class _TaskRunner:
    """The Linux sandbox for one task's steps, which it alone can stop: ``stop`` kills
    the sandboxes this task's runner started and refuses new steps, leaving the steps
    of other tasks in the same worker alone."""

    def __init__(self) -> None:
        from pipeline.sandbox.linux import LinuxRunner

        self.inner = LinuxRunner()
        self.stopped = threading.Event()
        self.work: Path | None = None

    def check_host(self) -> None:
        self.inner.check_host()

    def run_step(
        self,
        lowerdirs: Sequence[Path],
        upper: Path,
        work: Path,
        spec: RunSpec,
        on_output: Callable[[str], None] | None = None,
    ) -> RunResult:
        if self.stopped.is_set():
            raise SandboxError("sandbox: the task was cancelled; step not started")
        self.work = work
        try:
            return self.inner.run_step(lowerdirs, upper, work, spec, on_output)
        finally:
            self.work = None

    def stop(self) -> int:
        self.stopped.set()
        return self.inner.stop()
