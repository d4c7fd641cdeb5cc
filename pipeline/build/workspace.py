"""What one command works on: the store, the fleet of a specs directory, its registry
bases and lock file, the reproducibility settings, and one way to resolve a name.

The CLI makes one :class:`Workspace` per command and calls it; everything a command
needs beyond parsing options and printing lives here, so commands agree on how a name
is found, which epoch a layer is written with, and how a build is recorded.

Contracts:

* Lazy: the store is opened, the fleet loaded and the registries contacted only when a
  command asks (``pipeline images`` never parses a spec; ``validate`` never opens a
  store).
* One resolution rule for names given on the command line: a fleet name is a group,
  an image id (``app.web``), an app name or an image block name, in that order; a
  stored name is the name itself, then ``app.NAME``, then ``image.NAME``. An unknown
  name is a one-line UsageError with the closest known name.
* ``SOURCE_DATE_EPOCH`` is read once, validated (a whole number of seconds between 0
  and 253402300799, i.e. up to the year 9999), and used everywhere.
* A build is recorded in the store: ``running`` when it starts, then ``ok``, ``failed``
  or ``error`` (an exception, including Ctrl-C), with its totals and per-node outcomes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import SpecError, UnsafePathError, UsageError, did_you_mean
from pipeline.graph import BuildGraph, PipOptions, compile_fleet
from pipeline.model import Copy, Fleet
from pipeline.store import Store

if TYPE_CHECKING:
    from pipeline.build.cluster import ClusterOptions
    from pipeline.build.executor import BuildOptions, BuildResult, Reporter
    from pipeline.build.images import StoredImage
    from pipeline.fs.contexthash import FileDigest
    from pipeline.registry.client import Registries

FACTORING_VARIABLE = "PIPELINE_FACTORING"  # "off" (or 0/false/no): one-shot pip layers
BUDGET_VARIABLE = "PIPELINE_LAYER_BUDGET"
MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z: the largest time a tar header and RFC 3339 share
EPOCH_VARIABLE = "SOURCE_DATE_EPOCH"


def parse_epoch(environ: Mapping[str, str]) -> int:
    """``SOURCE_DATE_EPOCH`` as whole seconds (0 when unset or empty); UsageError naming
    the variable for anything else (``abc``, ``1e20``, ``-1``, ``1.5``)."""
    text = environ.get(EPOCH_VARIABLE, "").strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) > MAX_EPOCH:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise UsageError(
            f"{EPOCH_VARIABLE}={shown!r}: expected a whole number of seconds since 1970 "
            f"between 0 and {MAX_EPOCH}"
        )
    return int(text)


def parse_overrides(pairs: Sequence[str], option: str = "--set") -> dict[str, str]:
    """``NAME=VALUE`` pairs (of ``option``) as a mapping; UsageError without ``=``."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"{option} {pair!r}: expected NAME=VALUE")
        out[name] = value
    return out


class _ParseCache:
    """``hcl.files.ParseCache`` over the store: parsed spec files keyed by their content."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, key: str) -> bytes | None:
        return self.store.cache_get("parsed-specs", key)

    def put(self, key: str, data: bytes) -> None:
        self.store.cache_put("parsed-specs", key, data)


class Workspace:
    """One command's view of a store and (optionally) a specs directory. Not thread-safe;
    the objects it hands out (the store, registries) are."""

    def __init__(
        self,
        store_path: Path,
        *,
        specs: Path | None = None,
        overrides: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        """``on_note`` hears the store's one-line notes when it is opened (e.g. that
        its permissions were tightened)."""
        self.on_note = on_note
        self.store_path = store_path
        self.specs = specs
        self.overrides = dict(overrides or {})
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        # what each compiled COPY took from its context (for the key inputs kept per node)
        self.copy_manifests: dict[Copy, tuple[FileDigest, ...]] = {}
        self.factoring: bool | None = None  # None: from PIPELINE_FACTORING (default on)
        self.layer_budget: int | None = None  # None: from PIPELINE_LAYER_BUDGET
        self.pip_update = False  # re-resolve every pip set (ignore the lock's pins)
        self.pip_resolved: dict[str, Any] = {}  # resolved by this workspace

    # -- the store and settings --------------------------------------------------------

    @cached_property
    def store(self) -> Store:
        store = Store(self.store_path)
        if self.on_note is not None:
            for note in store.notes:
                self.on_note(note)
        return store

    @cached_property
    def epoch(self) -> int:
        return parse_epoch(self.environ)

    def ca_bundle(self, given: Path | None = None) -> Path | None:
        """``given``, else the CA bundle the host's own tools are configured with."""
        from pipeline.build.executor import default_ca_bundle

        return given or default_ca_bundle(self.environ)

    def registries(self, insecure: bool = False, ca_bundle: Path | None = None) -> Registries:
        from pipeline.registry.client import Registries

        return Registries(insecure=insecure, ca_bundle=self.ca_bundle(ca_bundle))

    # -- the fleet -----------------------------------------------------------------------

    def load_fleet(self, cached: bool = True) -> Fleet:
        """Load the specs directory (through the store's parse cache when ``cached``)."""
        from pipeline.spec.loader import load_fleet

        if self.specs is None:
            raise UsageError("no specs directory given")
        if not self.specs.is_dir():
            raise UsageError(f"{self.specs}: no such specs directory")
        cache = _ParseCache(self.store) if cached else None
        factoring = self.pip_options(resolved=False).factoring
        return load_fleet(
            self.specs, self.overrides, self.environ, parse_cache=cache, factoring=factoring
        )

    @cached_property
    def fleet(self) -> Fleet:
        return self.load_fleet()

    def select(self, names: Sequence[str]) -> list[str]:
        """Fleet names (groups, ids, app or image names) -> ImageDef ids, in order."""
        fleet = self.fleet
        out: list[str] = []
        for name in names:
            if name in fleet.groups:
                ids = list(fleet.groups[name])
            elif name in fleet.images:
                ids = [name]
            elif f"app.{name}" in fleet.images:
                ids = [f"app.{name}"]
            elif f"image.{name}" in fleet.images:
                ids = [f"image.{name}"]
            else:
                choices = [i.split(".", 1)[1] for i in fleet.images] + list(fleet.groups)
                raise UsageError(
                    f"{name}: no such app, image or group in the specs{_hint(name, choices)}"
                )
            out.extend(i for i in ids if i not in out)
        return out

    def compile(self, outputs: Sequence[str] | None = None) -> BuildGraph:
        """The merged DAG of ``outputs`` (default: everything build-all builds)."""
        from pipeline.build.images import resolve_bases
        from pipeline.fs.context import ContextError
        from pipeline.fs.contexthash import ContextHasher, digest_of

        store = self.store
        hasher = ContextHasher(store.root / "context-cache.json")

        def copy_digest(copy: Copy) -> str:
            try:
                rows = hasher.manifest(Path(copy.context), copy.sources, copy.ignore)
                self.copy_manifests[copy] = rows
                return digest_of(rows)
            except ContextError as exc:
                raise exc.at(copy.loc) from None
            except UnsafePathError as exc:
                where = f"{copy.loc}: " if copy.loc else ""
                raise UnsafePathError(
                    f"{where}COPY context {exc.where}", exc.path, exc.reason
                ) from None

        fleet = self.fleet
        bases = resolve_bases(fleet, store)
        graph = compile_fleet(fleet, bases, copy_digest, outputs, self.epoch, self.pip_options())
        hasher.save()
        return graph

    def pip_options(self, resolved: bool = True) -> PipOptions:
        """Factoring settings: the switch and budget (options, else the environment),
        and the resolutions of the lock file (none with ``pip_update``) and this run."""
        from pipeline.factoring import DEFAULT_LAYER_BUDGET

        factoring = self.factoring
        if factoring is None:
            text = self.environ.get(FACTORING_VARIABLE, "").strip().lower()
            factoring = text not in ("off", "0", "false", "no")
        budget = self.layer_budget
        if budget is None:
            text = self.environ.get(BUDGET_VARIABLE, "").strip()
            if text and (not text.isdigit() or int(text) < 1):
                raise UsageError(f"{BUDGET_VARIABLE}={text!r}: expected a whole number >= 1")
            budget = int(text) if text else DEFAULT_LAYER_BUDGET
        if not resolved:
            return PipOptions(factoring, {}, budget)
        resolutions = {} if self.pip_update else dict(self.pip_lock())
        resolutions.update(self.pip_resolved)
        return PipOptions(factoring, resolutions, budget)

    def pip_lock(self) -> Mapping[str, Any]:
        if self.specs is None or not self.factoring_possible:
            return {}
        from pipeline.build.lock import LOCK_FILE
        from pipeline.build.pipresolve import read_pip_lock

        return read_pip_lock(self.specs / LOCK_FILE)

    @property
    def factoring_possible(self) -> bool:
        return any(getattr(s, "pip", ()) for d in self.fleet.images.values() for s in d.steps)

    def resolve_pip(
        self,
        graph: BuildGraph,
        outputs: Sequence[str],
        options: BuildOptions,
        reporter: Reporter,
    ) -> BuildGraph:
        """Resolve the pip sets ``graph`` has pending (in the sandbox, on their
        environment layers, which are built for it), pin them in the lock file, and
        compile again; ``graph`` itself when none is pending."""
        if not graph.pending_pip:
            return graph
        from pipeline.build.lock import LOCK_FILE
        from pipeline.build.pipresolve import resolve_pending, write_pip_lock

        found = resolve_pending(
            self.store, graph, list(graph.pending_pip.values()), options, reporter
        )
        if not found:
            return graph
        self.pip_resolved.update(found)
        assert self.specs is not None
        write_pip_lock(self.specs / LOCK_FILE, found)
        return self.compile(outputs)

    def ensure_registry_bases(
        self,
        update: bool = False,
        insecure: bool = False,
        ca_bundle: Path | None = None,
        on_pull: Callable[[str, str], None] | None = None,
    ) -> None:
        """Pull the fleet's ``host:port/name:tag`` bases the store lacks and pin their
        digests in ``SPECS/pipeline.lock`` (pinned digests are used unless ``update``).
        No network when every base is pinned and in the store. ``on_pull(ref, digest)``
        hears about each pull."""
        refs: dict[str, Any] = {}
        for image in self.fleet.images.values():
            base = image.base
            if base.kind == "registry" and base.ref not in refs:
                refs[base.ref] = (image, base)
        if not refs:
            return
        from pipeline.build.lock import LOCK_FILE, ensure_bases
        from pipeline.registry.reference import Reference

        for text, (image, base) in refs.items():
            try:
                Reference.parse(text)
            except UsageError as exc:
                raise SpecError(base.loc, str(exc), f'{image.kind} "{image.name}"') from None
        assert self.specs is not None
        registries = self.registries(insecure, ca_bundle)
        try:
            lock = self.specs / LOCK_FILE
            for r in ensure_bases(refs, self.store, registries, lock, update, self.epoch):
                if r.pulled and on_pull is not None:
                    on_pull(r.ref, r.digest)
        finally:
            registries.close()

    def remote_caches(
        self,
        cache_from: str | None,
        cache_to: str | None,
        insecure: bool = False,
        ca_bundle: Path | None = None,
    ) -> dict[str, Any]:
        """``BuildOptions`` keyword arguments for ``--cache-from/--cache-to`` (each
        registry pinged first, so a wrong address fails before any step runs)."""
        if cache_from is None and cache_to is None:
            return {"cache_from": None, "cache_to": None}
        from pipeline.build.cache import RegistryCache

        registries = self.registries(insecure, ca_bundle)
        caches: dict[str, Any] = {}
        for option, value in (("cache_from", cache_from), ("cache_to", cache_to)):
            caches[option] = RegistryCache(registries, value, epoch=self.epoch) if value else None
        for cache in {id(c): c for c in caches.values() if c is not None}.values():
            registries.client(cache.ref.registry).ping()
        return caches

    def build(
        self,
        graph: BuildGraph,
        targets: Sequence[str],
        options: BuildOptions,
        reporter: Reporter,
        command: str,
        cluster: ClusterOptions | None = None,
    ) -> BuildResult:
        """Run the build (on ``cluster`` when given) and record it in the store (see the
        module's contracts). Step failures are in the result; exceptions (a broken
        store, Ctrl-C) are recorded as ``error`` and re-raised."""
        from pipeline.build import executor
        from pipeline.build.summary import build_totals

        store = self.store
        build_id = store.begin_build(command)
        try:
            if cluster is not None:
                from pipeline.build import cluster as on_cluster

                result = on_cluster.build(graph, store, targets, options, cluster, reporter)
            else:
                result = executor.build(graph, store, targets, options, reporter)
        except BaseException as exc:
            store.end_build(build_id, "error", {"error": f"{type(exc).__name__}: {exc}"})
            raise
        store.end_build(
            build_id, "failed" if result.failures else "ok", build_totals(graph, result)
        )
        for key, node_result in result.nodes.items():
            node = graph.node(key)
            if node.kind not in ("base", "stack"):
                store.record_node(
                    build_id,
                    key,
                    node.label,
                    ",".join(sorted(graph.apps_of(key))),
                    node_result.outcome,
                    node_result.seconds,
                    node_result.layers[-1] if node_result.layers else None,
                )
        self.keep_key_inputs(graph, result.nodes)
        return result

    def keep_key_inputs(self, graph: BuildGraph, keys: Iterable[str]) -> None:
        """Keep the key inputs of ``keys`` that the store lacks (for ``pipeline why``);
        COPY file lists come from this workspace's ``compile``."""
        from pipeline.build import keyinputs

        wanted = list(keys)
        known = self.store.node_inputs(wanted)
        missing = [k for k in wanted if k not in known]
        if not missing:
            return
        found = keyinputs.materials(graph, missing, self.copy_manifests)
        self.store.put_node_inputs((k, keyinputs.encode(m)) for k, m in found.items())

    # -- names in the store ----------------------------------------------------------

    def stored_name(self, name: str) -> str:
        """The name under which ``name`` is stored: itself, ``app.NAME`` or
        ``image.NAME``; UsageError with the closest stored name otherwise."""
        store = self.store
        for candidate in (name, f"app.{name}", f"image.{name}"):
            if store.resolve(candidate) is not None:
                return candidate
        choices = sorted(
            {n.removeprefix("app.").removeprefix("image.") for n, _, _ in store.names()}
        )
        raise UsageError(f"{name}: no such image in the store ({store.root}){_hint(name, choices)}")

    def image(self, name: str) -> StoredImage:
        from pipeline.build.images import load_image

        return load_image(self.store, self.stored_name(name))

    def public_tags(self, name: str) -> list[str]:
        """The tags that point at the same manifest as stored ``name`` (ids excluded)."""
        store = self.store
        digest = store.resolve(name)
        return sorted(
            n
            for n, d, _ in store.names()
            if d == digest and not n.startswith(("app.", "image.")) and "@" not in n
        )

    def layer_users(self, exclude: str = "") -> dict[str, set[str]]:
        """diff_id -> the app names (without ``app.``) whose stored image holds it."""
        from pipeline.build.images import load_image

        users: dict[str, set[str]] = {}
        for other, _, _ in self.store.names():
            if other.startswith("app.") and other != exclude:
                for diff_id, _ in load_image(self.store, other).layers:
                    users.setdefault(diff_id, set()).add(other.removeprefix("app."))
        return users


def _hint(name: str, choices: Sequence[str]) -> str:
    found = did_you_mean(name, choices)
    return f' (did you mean "{found}"?)' if found else ""
