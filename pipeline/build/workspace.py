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
  stored name is found by :meth:`Workspace.stored_name` (the name itself, the current
  fleet's ``app.NAME``/``image.NAME``, ``FLEET/APP``, then the one fleet that has
  it; see :mod:`pipeline.names`). An unknown name is a one-line UsageError with the
  closest known name.
* The current fleet is the one of ``specs`` (default: ``./specs`` when it exists);
  its name is its top-level ``fleet = "NAME"``, else the directory's name
  (:func:`pipeline.names.default_fleet_name`). Its images are stored as
  ``FLEET/app.NAME``.
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

from pipeline import names
from pipeline.errors import PipelineError, SpecError, UnsafePathError, UsageError, did_you_mean
from pipeline.graph import BuildGraph, compile_fleet
from pipeline.model import Copy, Fleet, ImageDef
from pipeline.store import Store

if TYPE_CHECKING:
    from pipeline.build.cluster import ClusterOptions
    from pipeline.build.executor import BuildOptions, BuildResult, Reporter
    from pipeline.build.images import StoredImage
    from pipeline.fs.contexthash import FileDigest
    from pipeline.registry.client import Registries

MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z: the largest time a tar header and RFC 3339 share
EPOCH_VARIABLE = "SOURCE_DATE_EPOCH"
DEFAULT_SPECS = Path("specs")  # the current fleet of commands that take no --specs


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
        if not self.specs.is_dir() and not self.specs.is_file():
            raise UsageError(f"{self.specs}: no such specs directory or file")
        cache = _ParseCache(self.store) if cached else None
        return load_fleet(self.specs, self.overrides, self.environ, parse_cache=cache)

    @cached_property
    def fleet(self) -> Fleet:
        return self.load_fleet()

    @property
    def fleet_name(self) -> str:
        """The loaded fleet's name (its ``fleet`` attribute, else its directory's)."""
        assert self.specs is not None
        return self.fleet.name or names.default_fleet_name(self.specs)

    @cached_property
    def current_fleet(self) -> str | None:
        """The current fleet's name: that of ``specs``, else of ``./specs`` when it
        exists, else None (then names are looked up in every fleet)."""
        if self.specs is None:
            if not DEFAULT_SPECS.is_dir():
                return None
            self.specs = DEFAULT_SPECS
        return self.fleet_name

    def lock_path(self) -> Path:
        from pipeline.build.lock import LOCK_FILE

        assert self.specs is not None
        folder = self.specs.parent if self.specs.is_file() else self.specs
        return folder / LOCK_FILE

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
        graph = compile_fleet(
            fleet, resolve_bases(fleet, store), copy_digest, outputs, self.epoch, self.fleet_name
        )
        hasher.save()
        return graph

    def ensure_registry_bases(
        self,
        update: bool = False,
        insecure: bool = False,
        ca_bundle: Path | None = None,
        on_pull: Callable[[str, str], None] | None = None,
        pull: str = "missing",
        targets: Sequence[str] | None = None,
    ) -> None:
        """Make the fleet's ``host[:port]/name:tag`` bases available, by the ``pull``
        policy (as buildah and podman have it): ``missing`` uses what the store holds
        under the reference (``localhost/`` prefix or not, see
        :func:`pipeline.build.images.find_base`) and pulls the rest; ``always`` pulls
        every one again (as ``update`` does); ``never`` uses the store only. Pulled
        digests are pinned in ``SPECS/pipeline.lock`` and a pinned digest the store
        holds needs no network. ``on_pull(ref, digest)`` hears about each pull.
        ``targets``: only the bases these image ids are built on (default: all).
        Errors start with the location of the ``from``/``FROM`` that names the base."""
        from pipeline.build.images import find_base
        from pipeline.build.lock import ensure_bases, read_lock
        from pipeline.registry.reference import Reference

        if pull not in ("missing", "always", "never"):
            raise UsageError(f"--pull={pull}: expected missing, always or never")
        update = update or pull == "always"
        refs: dict[str, Any] = {}
        for image in self._closure(targets):
            base = image.base
            if base.kind == "registry" and base.ref not in refs:
                refs[base.ref] = (image, base)
        if not refs:
            return
        for text, (image, base) in refs.items():
            try:
                Reference.parse(text)
            except UsageError as exc:
                raise SpecError(base.loc, str(exc), f'{image.kind} "{image.name}"') from None
        lock = self.lock_path()
        pins = read_lock(lock)
        registries = None
        try:
            for text, (image, base) in refs.items():
                where = f'{base.loc}: {image.kind} "{image.name}": FROM {text}'
                if not update and text not in pins and find_base(self.store, text) is not None:
                    continue  # in the store: used as it is
                if pull == "never" and not (text in pins or "@" in text):
                    raise _Located(where, UsageError("not in the store, and --pull=never"))
                if registries is None:
                    registries = self.registries(insecure, ca_bundle)
                try:
                    done = ensure_bases(
                        [text], self.store, registries, lock, update, self.epoch, pull == "never"
                    )
                except PipelineError as exc:
                    raise _Located(where, exc) from None
                for r in done:
                    if r.pulled and on_pull is not None:
                        on_pull(r.ref, r.digest)
        finally:
            if registries is not None:
                registries.close()

    def _closure(self, targets: Sequence[str] | None) -> list[ImageDef]:
        """The fleet's images ``targets`` are built from (themselves included)."""
        images = self.fleet.images
        if targets is None:
            return list(images.values())
        seen: dict[str, ImageDef] = {}
        todo = list(targets)
        while todo:
            image_id = todo.pop()
            image = images.get(image_id)
            if image is None or image_id in seen:
                continue
            seen[image_id] = image
            if image.base.kind == "block":
                todo.append(image.base.ref)
            todo.extend(s.from_image for s in image.steps if isinstance(s, Copy) and s.from_image)
        return list(seen.values())

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
            if node.kind != "base":
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
        """The stored name ``name`` means (the one lookup every command uses): the
        name itself (a tag, ``FLEET/app.X``, ``name@digest``), the current fleet's
        ``app.NAME`` or ``image.NAME``, ``FLEET/NAME`` as another fleet's app, then
        the one fleet that has an app or image NAME (UsageError when several do, or
        none, with the closest stored name)."""
        store = self.store
        if store.resolve(name) is not None:
            return name
        for candidate in names.candidates(name, self.current_fleet):
            if store.resolve(candidate) is not None:
                return candidate
        stored = [n for n, _, _ in store.names()]
        found = names.in_other_fleets(name, stored)
        if len(found) == 1:
            return found[0]
        if found:
            raise names.ambiguous(name, found)
        choices = sorted({names.short(n, self.current_fleet) for n in stored})
        raise UsageError(f"{name}: no such image in the store ({store.root}){_hint(name, choices)}")

    def image(self, name: str) -> StoredImage:
        from pipeline.build.images import load_image

        return load_image(self.store, self.stored_name(name))

    def fleet_tags(self, stored: str) -> list[str] | None:
        """The tags the current fleet's spec gives the image stored as ``stored``
        (``FLEET/app.NAME``), or None when it is not one of the current fleet's."""
        found = names.split_id(stored)
        if found is None or self.current_fleet is None or found[0] != self.current_fleet:
            return None
        image = self.fleet.images.get(found[1])
        return list(image.tags) if image is not None else None

    def owned_names(self) -> set[str]:
        """The stored names the current fleet makes or uses: its images' ids and tags,
        and the names its bases are stored under. Empty without a current fleet."""
        if self.current_fleet is None:
            return set()
        from pipeline.build.images import find_base

        owned: set[str] = set()
        for image_id, image in self.fleet.images.items():
            owned.add(names.qualify(self.current_fleet, image_id))
            owned.update(image.tags)
            if image.base.kind in ("store", "registry"):
                found = find_base(self.store, image.base.ref)
                owned.update({image.base.ref, *([found] if found else [])})
        return owned

    def layer_users(self, exclude_manifest: str = "") -> dict[str, set[str]]:
        """diff_id -> the apps (as :func:`pipeline.names.short` shows them) whose
        stored image holds it, leaving out the images stored as ``exclude_manifest``
        (so an image's sharers are the same whatever name it is asked by)."""
        from pipeline.build.images import load_image

        users: dict[str, set[str]] = {}
        for other, digest, _ in self.store.names():
            if names.is_app_id(other) and digest != exclude_manifest:
                shown = names.short(other, self.current_fleet)
                for diff_id, _ in load_image(self.store, other).layers:
                    users.setdefault(diff_id, set()).add(shown)
        return users


class _Located(PipelineError):
    """Another error, prefixed with the spec location it concerns; same exit status."""

    def __init__(self, where: str, exc: PipelineError) -> None:
        self.exit_code = exc.exit_code
        super().__init__(f"{where}: {exc}")


def _hint(name: str, choices: Sequence[str]) -> str:
    found = did_you_mean(name, choices)
    return f' (did you mean "{found}"?)' if found else ""
