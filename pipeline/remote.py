"""Registries meet the store: push, pull, the lock file, and the remote layer cache.

Composition of ``registry`` (HTTP), ``store`` (every write), ``tarball`` (layer bytes)
and ``oci`` (JSON). Contracts:

* **Push** sends each layer as the deterministic tar regenerated from its store dir
  (spooled to a staging file and checked against its diff_id before a byte leaves;
  a corrupted layer dir is a StoreError, never an upload). Uncompressed by default, so
  blob digest = diff_id and the registry's manifest digest equals the store's; with
  ``compression="gzip"`` a gzip stream (level 6, no name, mtime 0) is sent instead
  and the manifest is rewritten to point at it. Before uploading, a blob is looked up
  (HEAD) and, when it was pushed earlier to another repository of the same registry,
  mounted from there. Where blobs went is remembered in the store's derived cache
  (``pushed-blobs``; a miss only costs an upload). Config before manifest, manifest
  last, so a tag never names a manifest whose blobs are missing.
* **Pull** fetches the manifest (an index: the ``linux/<host arch>`` entry), the config
  and every layer; each blob is verified (digest and size while streaming, each layer's
  uncompressed stream against ``rootfs.diff_ids``) and extracted into a staging dir.
  Only when the whole image verified are the layers committed, then the config and
  manifest blobs, then the name. A failure leaves the store as it was (the staging dir
  is removed). Layers whose tar was not written by us (another tool's ordering or
  mtimes) are re-keyed by the tar the store regenerates, and the config and manifest
  rewritten to match, as ``pipeline import`` does; the remote digest -> local digest
  mapping is kept in the derived cache (``pulled-manifests``).
* **Lock file** ``pipeline.lock`` next to the specs pins each registry base's tag to the
  manifest digest it resolved to; later builds use the pinned digest (and no network
  at all when the store already has it) until ``update=True``.
* **Remote cache** (:class:`RegistryCache`): one small OCI manifest per cache key in the
  cache repository, tagged ``cache-<64 hex of the key>``: its config (media type
  ``application/vnd.pipeline.cache.config.v1+json``) is ``{"diff_id", "key"}`` and its
  one layer is the layer blob. Entries are immutable and independent (no shared index
  to race on); a key already present is left alone.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import platform as host_platform
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

from pipeline import oci
from pipeline.digest import canonical_json, hex_of, is_digest
from pipeline.errors import StoreError, UsageError
from pipeline.registry import (
    Backoff,
    Manifest,
    Reference,
    Registries,
    RegistryClient,
    RegistryError,
    pick_platform,
    platforms,
)
from pipeline.store import Store

Compression = Literal["none", "gzip"]

CACHE_ARTIFACT = "application/vnd.pipeline.cache.v1+json"
CACHE_CONFIG = "application/vnd.pipeline.cache.config.v1+json"
CACHE_TAG_PREFIX = "cache-"
LOCK_FILE = "pipeline.lock"
LOCK_VERSION = 1
MAX_CONFIG = 16 << 20

LAYER_TYPES = frozenset(
    {
        oci.MT_LAYER,
        oci.MT_LAYER_GZIP,
        oci.MT_DOCKER_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar",
    }
)


def host_arch() -> str:
    machine = host_platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def cache_tag(key: str) -> str:
    """The tag of a cache key's entry: ``cache-`` + the key's 64 hex digits."""
    return CACHE_TAG_PREFIX + hex_of(key)


# ---------------------------------------------------------------------------------------
# pushing blobs


class _Hashing:
    """A write-through file wrapper that hashes and counts."""

    def __init__(self, inner: BinaryIO) -> None:
        import hashlib

        self._inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self._inner.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._inner.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


@dataclass
class PushStats:
    uploaded: int = 0
    mounted: int = 0
    present: int = 0
    bytes_sent: int = 0

    def add(self, outcome: str, size: int) -> None:
        if outcome == "uploaded":
            self.uploaded += 1
            self.bytes_sent += size
        elif outcome == "mounted":
            self.mounted += 1
        else:
            self.present += 1


@dataclass(frozen=True)
class PushResult:
    target: str  # registry/repository:tag
    digest: str  # the manifest digest in the registry
    layers: int
    stats: PushStats


@dataclass(frozen=True)
class _LayerBlob:
    descriptor: oci.Descriptor
    diff_id: str


class BlobPusher:
    """Puts blobs into repositories, each (registry, repository, digest) at most once
    per run; HEAD first, then a cross-repository mount from a repository it is known
    to be in, then an upload. Thread-safe."""

    def __init__(self, registries: Registries, store: Store, compression: Compression) -> None:
        self.registries = registries
        self.store = store
        self.compression = compression
        self._lock = threading.Lock()
        self._present: set[tuple[str, str, str]] = set()
        self._where: dict[str, set[str]] = {}
        self._gzip: dict[str, tuple[str, int]] = {}

    # where blobs are: memory for this run, the store's derived cache across runs
    def _known_repos(self, digest: str) -> set[str]:
        with self._lock:
            found = set(self._where.get(digest, ()))
        raw = self.store.cache_get("pushed-blobs", hex_of(digest))
        if raw:
            with contextlib.suppress(ValueError, TypeError):
                found.update(str(r) for r in json.loads(raw))
        return found

    def _remember(self, registry: str, repository: str, digest: str) -> None:
        repo = f"{registry}/{repository}"
        with self._lock:
            self._present.add((registry, repository, digest))
            self._where.setdefault(digest, set()).add(repo)
        known = self._known_repos(digest)
        if repo in known and self.store.cache_get("pushed-blobs", hex_of(digest)):
            return
        keep = sorted(known | {repo})[-32:]
        self.store.cache_put("pushed-blobs", hex_of(digest), json.dumps(keep).encode())

    def ensure(
        self,
        client: RegistryClient,
        repository: str,
        digest: str,
        size: int,
        produce: Callable[[Path], None] | bytes,
    ) -> str:
        """Make ``digest`` present in ``repository``. ``produce`` writes the blob's bytes
        to a path (layers) or is the bytes (configs). Returns "present", "mounted" or
        "uploaded"."""
        registry = client.registry
        with self._lock:
            if (registry, repository, digest) in self._present:
                return "present"
        if client.blob_exists(repository, digest):
            self._remember(registry, repository, digest)
            return "present"
        location = None
        for repo in sorted(self._known_repos(digest)):
            host, _, source = repo.partition("/")
            if host != registry or source == repository:
                continue
            mounted, location = client.mount_blob(repository, digest, source)
            if mounted:
                self._remember(registry, repository, digest)
                return "mounted"
            break  # the registry opened an upload session instead: use it
        if isinstance(produce, bytes):
            client.upload_bytes(repository, digest, produce, location)
        else:
            with self.store.staging() as staging:
                path = staging.path / "blob"
                produce(path)
                client.upload_blob(repository, digest, size, path, location)
        self._remember(registry, repository, digest)
        return "uploaded"

    def layer(
        self, diff_id: str, size: int, epoch: int
    ) -> tuple[_LayerBlob, Callable[[Path], None]]:
        """The descriptor of a layer's blob in the chosen compression, and the function
        that writes exactly those bytes (checking the diff_id on the way)."""
        if self.compression == "none":
            desc = oci.Descriptor(oci.MT_LAYER, diff_id, size)
            return _LayerBlob(desc, diff_id), lambda p: self._write_layer(diff_id, p, epoch, False)
        known = self._gzip_known(diff_id)
        if known is None:
            with self.store.staging() as staging:
                path = staging.path / "blob"
                known = self._write_layer(diff_id, path, epoch, True)
        digest, blob_size = known
        desc = oci.Descriptor(oci.MT_LAYER_GZIP, digest, blob_size)

        def produce(path: Path) -> None:
            made = self._write_layer(diff_id, path, epoch, True)
            if made != (digest, blob_size):
                raise StoreError(
                    f"{self.store.root}: gzip of layer {diff_id} is not reproducible "
                    f"(made {made[0]}, expected {digest})"
                )

        return _LayerBlob(desc, diff_id), produce

    def _gzip_known(self, diff_id: str) -> tuple[str, int] | None:
        with self._lock:
            if diff_id in self._gzip:
                return self._gzip[diff_id]
        raw = self.store.cache_get("gzip-layers", hex_of(diff_id))
        if raw:
            try:
                value = json.loads(raw)
                if is_digest(value["digest"]) and isinstance(value["size"], int):
                    return str(value["digest"]), int(value["size"])
            except (ValueError, KeyError, TypeError):
                return None
        return None

    def _write_layer(self, diff_id: str, path: Path, epoch: int, compress: bool) -> tuple[str, int]:
        """Write the layer's tar (gzip'd when ``compress``) to ``path``; StoreError if
        the dir no longer gives ``diff_id``. Returns (blob digest, blob size)."""
        from pipeline.tarball import write_layer

        layer_dir = self.store.layer_path(diff_id)
        with open(path, "wb") as raw:
            out = _Hashing(raw)
            sink = cast(BinaryIO, out)
            if compress:
                with gzip.GzipFile(
                    filename="", fileobj=sink, mode="wb", compresslevel=6, mtime=0
                ) as gz:
                    info = write_layer(layer_dir, cast(BinaryIO, gz), epoch)
            else:
                info = write_layer(layer_dir, sink, epoch)
        if info.diff_id != diff_id:
            raise StoreError(
                f"{self.store.layer_path(diff_id)}: corrupted layer: expected {diff_id}, "
                f"its files now give {info.diff_id}"
            )
        if compress:
            value = {"digest": out.digest, "size": out.size}
            with self._lock:
                self._gzip[diff_id] = (out.digest, out.size)
            self.store.cache_put("gzip-layers", hex_of(diff_id), canonical_json(value))
        return out.digest, out.size


def push_image(
    store: Store,
    registries: Registries,
    name: str,
    targets: Sequence[Reference],
    compression: Compression = "none",
    epoch: int = 0,
    pusher: BlobPusher | None = None,
) -> list[PushResult]:
    """Push the stored image ``name`` to every target (``registry/repository:tag``):
    blobs once per repository, then the manifest under each tag."""
    from pipeline.images import load_image

    image = load_image(store, name)
    pusher = pusher or BlobPusher(registries, store, compression)
    config = store.get_blob(image.config_digest)
    layers = [pusher.layer(d, s, epoch) for d, s in image.layers]
    if compression == "none":
        manifest_bytes = store.get_blob(image.manifest_digest)
    else:
        config_desc = oci.Descriptor(oci.MT_CONFIG, image.config_digest, len(config))
        manifest_bytes = oci.manifest(config_desc, [lb.descriptor for lb, _ in layers]).data
    results = []
    by_repo: dict[tuple[str, str], list[Reference]] = {}
    for ref in targets:
        by_repo.setdefault((ref.registry, ref.repository), []).append(ref)
    for (registry, repository), refs in by_repo.items():
        client = registries.client(registry)
        stats = PushStats()
        for blob, produce in layers:
            d = blob.descriptor
            stats.add(pusher.ensure(client, repository, d.digest, d.size, produce), d.size)
        stats.add(
            pusher.ensure(client, repository, image.config_digest, len(config), config),
            len(config),
        )
        for ref in refs:
            digest = client.put_manifest(
                repository, ref.tag or "latest", manifest_bytes, oci.MT_MANIFEST
            )
            results.append(
                PushResult(str(ref.with_tag(ref.tag or "latest")), digest, len(layers), stats)
            )
    return results


# ---------------------------------------------------------------------------------------
# pulling


@dataclass(frozen=True)
class PullResult:
    name: str
    local_digest: str  # the manifest digest in the store
    remote_digest: str  # what the reference resolved to (an index's digest for an index)
    fetched: int  # layers downloaded
    present: int  # layers the store already had
    bytes_fetched: int
    same_digest: bool = True  # the store's manifest is byte-identical to the registry's


def _mapping_keys(remote_digest: str, arch: str | None) -> list[str]:
    """Derived-cache keys of a pulled digest: an image manifest's own, and an index's
    per platform (an index maps to a different image for each architecture)."""
    keys = [hex_of(remote_digest)]
    if arch:
        keys.append(hex_of(remote_digest) + "linux" + "".join(c for c in arch if c.isalnum()))
    return keys


def local_for(store: Store, remote_digest: str, arch: str | None = None) -> str | None:
    """The store's manifest for a remote manifest digest (or, with ``arch``, an index
    digest) pulled earlier, if the store still has it and all its layers."""
    raw = None
    for key in _mapping_keys(remote_digest, arch):
        raw = store.cache_get("pulled-manifests", key) or raw
    local = raw.decode() if raw else remote_digest
    if not is_digest(local) or not store.blob_path(local).exists():
        return None
    try:
        layers = store.manifest_layers(local)
    except (StoreError, KeyError, TypeError, ValueError):
        return None
    return local if all(store.has_layer(d) for d, _ in layers) else None


def _resolve_manifest(client: RegistryClient, ref: Reference, arch: str) -> tuple[Manifest, str]:
    """(the image manifest, the digest the reference resolved to)."""
    repo = ref.repository
    found = client.get_manifest(repo, ref.reference)
    if found is None:
        raise client.error(f"manifest {ref.reference} not found", repo, ref.digest)
    top = found.digest
    for _ in range(3):
        if not found.is_index:
            return found, top
        index = found.json()
        entry = pick_platform(index, "linux", arch)
        if entry is None:
            have = ", ".join(platforms(index)) or "none"
            raise client.error(
                f"no linux/{arch} image in the index (has: {have})", repo, found.digest
            )
        digest = entry.get("digest")
        if not isinstance(digest, str) or not is_digest(digest):
            raise client.error(f"index entry with a bad digest {digest!r}", repo, found.digest)
        sub = client.get_manifest(repo, digest)
        if sub is None:
            raise client.error("manifest listed in the index is missing", repo, digest)
        found = sub
    raise client.error("image indexes nested too deeply", repo, top)


@dataclass(frozen=True)
class _FetchedLayer:
    path: Path
    diff_id: str  # as the image config says
    local_diff_id: str  # what the store dir regenerates to
    size: int  # local tar size


def _fetch_layer(
    client: RegistryClient,
    repository: str,
    desc: Mapping[str, Any],
    diff_id: str,
    dest: Path,
    epoch: int,
) -> _FetchedLayer:
    """Download one layer blob into ``dest`` (extracted), verifying its blob digest,
    size and uncompressed diff_id; retried from scratch on a broken transfer."""
    import shutil

    from pipeline.tarball import extract_layer, layer_info

    digest, size = str(desc["digest"]), int(desc["size"])
    where = f"{client.registry}/{repository}@{digest}"
    backoff = Backoff(client.retry)
    while True:
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir()
        dest.chmod(0o755)
        try:
            with client.open_blob(repository, digest, size) as reader:
                try:
                    report = extract_layer(reader, dest, where)  # type: ignore[arg-type]
                    reader.drain()
                except StoreError as exc:
                    # not a valid layer stream: say whether it was cut short or altered
                    with contextlib.suppress(RegistryError):
                        reader.drain()
                    if reader.size < size:
                        raise client.error(
                            f"truncated blob: got {reader.size} of {size} bytes ({exc})",
                            repository,
                            digest,
                            transient=True,
                        ) from None
                    if reader.digest != digest:
                        raise client.error(
                            f"digest mismatch: the registry sent {reader.digest}, "
                            "which is not a valid layer either",
                            repository,
                            digest,
                        ) from None
                    raise
            break
        except RegistryError as exc:
            if exc.transient and backoff.next():
                continue
            raise
    if reader.digest != digest:
        raise client.error(
            f"digest mismatch: the registry sent {reader.digest}", repository, digest
        )
    if reader.size != size:
        raise client.error(
            f"size mismatch: expected {size} bytes, got {reader.size}", repository, digest
        )
    if report.diff_id != diff_id:
        raise client.error(
            f"diff_id mismatch: the config says {diff_id}, the layer's tar is {report.diff_id}",
            repository,
            digest,
        )
    info = layer_info(dest, epoch)
    return _FetchedLayer(dest, diff_id, info.diff_id, info.size)


def pull_image(
    store: Store,
    registries: Registries,
    ref: Reference,
    name: str,
    arch: str | None = None,
    epoch: int = 0,
) -> PullResult:
    """Pull ``ref`` into the store under ``name`` (see the module docstring)."""
    arch = arch or host_arch()
    client = registries.client(ref.registry)
    repo = ref.repository
    manifest, top = _resolve_manifest(client, ref, arch)
    local = local_for(store, manifest.digest)
    if local is not None:
        store.tag(name, local)
        present = len(store.manifest_layers(local))
        return PullResult(name, local, top, 0, present, 0, local == manifest.digest)
    value = manifest.json()

    def bad(message: str) -> RegistryError:
        return client.error(message, repo, manifest.digest)

    from pipeline.registry import descriptors

    config_desc = value.get("config")
    layer_descs = value.get("layers")
    if not isinstance(config_desc, Mapping) or not isinstance(layer_descs, list):
        raise bad("not an image manifest (no config or layers)")
    config_desc = descriptors([config_desc], bad)[0]
    layer_descs = descriptors(layer_descs, bad)
    for d in layer_descs:
        mt = str(d.get("mediaType", ""))
        if d.get("urls") or "nondistributable" in mt or "foreign" in mt:
            raise client.error(f"foreign layer ({mt}) cannot be pulled", repo, d["digest"])
        if "zstd" in mt:
            raise client.error(f"zstd layers are not supported ({mt})", repo, d["digest"])
        if mt not in LAYER_TYPES:
            raise client.error(f"unsupported layer media type {mt!r}", repo, d["digest"])
    config_data = client.get_blob_bytes(
        repo, config_desc["digest"], config_desc["size"], MAX_CONFIG
    )
    try:
        config = json.loads(config_data)
        diff_ids = list(config["rootfs"]["diff_ids"])
    except (ValueError, KeyError, TypeError):
        raise client.error("config without rootfs.diff_ids", repo, config_desc["digest"]) from None
    if len(diff_ids) != len(layer_descs) or not all(
        isinstance(d, str) and is_digest(d) for d in diff_ids
    ):
        raise client.error(
            f"config lists {len(diff_ids)} diff_ids for {len(layer_descs)} layers",
            repo,
            config_desc["digest"],
        )
    with store.gc_lock(), store.staging() as staging:
        fetched: list[_FetchedLayer | None] = []
        done: dict[str, _FetchedLayer] = {}
        nbytes = 0
        for i, (desc, diff_id) in enumerate(zip(layer_descs, diff_ids, strict=True)):
            if store.has_layer(diff_id):
                fetched.append(None)
                continue
            if diff_id in done:
                fetched.append(done[diff_id])
                continue
            layer = _fetch_layer(client, repo, desc, diff_id, staging.path / f"layer{i:03d}", epoch)
            nbytes += int(desc["size"])
            done[diff_id] = layer
            fetched.append(layer)
        # everything verified: commit layers, then config and manifest, then the name
        local_ids = []
        sizes = []
        for diff_id, layer in zip(diff_ids, fetched, strict=True):
            if layer is None:
                local_ids.append(diff_id)
                sizes.append(store.layer_size(diff_id))
                continue
            if layer.path.exists():
                store.commit_layer(layer.path, layer.local_diff_id, layer.size)
            local_ids.append(layer.local_diff_id)
            sizes.append(layer.size)
        rewritten = local_ids != diff_ids
        if rewritten:
            config["rootfs"]["diff_ids"] = local_ids
            config_blob = oci.json_blob(config, oci.MT_CONFIG)
        else:
            config_blob = oci.Blob(
                config_data,
                oci.Descriptor(oci.MT_CONFIG, config_desc["digest"], len(config_data)),
            )
        store.put_blob(config_blob)
        local_manifest = oci.manifest(
            config_blob.descriptor,
            [oci.Descriptor(oci.MT_LAYER, d, s) for d, s in zip(local_ids, sizes, strict=True)],
        )
        local_digest = store.put_blob(local_manifest)
        store.cache_put("pulled-manifests", hex_of(manifest.digest), local_digest.encode())
        if top != manifest.digest:
            key = _mapping_keys(top, arch)[-1]
            store.cache_put("pulled-manifests", key, local_digest.encode())
        store.tag(name, local_digest)
    fetched_count = len(done)
    return PullResult(
        name,
        local_digest,
        top,
        fetched_count,
        len(diff_ids) - sum(1 for f in fetched if f is not None),
        nbytes,
        local_digest == manifest.digest,
    )


# ---------------------------------------------------------------------------------------
# the lock file


def read_lock(path: Path) -> dict[str, str]:
    """The pins of a lock file (reference -> manifest digest); {} when it is absent."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a pipeline lock file: {exc}") from None
    bases = value.get("bases") if isinstance(value, Mapping) else None
    if not isinstance(bases, Mapping) or not all(
        isinstance(v, str) and is_digest(v) for v in bases.values()
    ):
        raise UsageError(f"{path}: not a pipeline lock file (expected 'bases': ref -> digest)")
    return {str(k): str(v) for k, v in bases.items()}


def write_lock(path: Path, pins: Mapping[str, str]) -> None:
    """Write the lock file atomically (temp + rename), keys sorted, one pin a line."""
    value = {
        "comment": "written by pipeline: the manifest digest each registry base resolved to; "
        "builds use it until `--update`",
        "version": LOCK_VERSION,
        "bases": dict(sorted(pins.items())),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class BaseResolution:
    ref: str
    digest: str  # the pinned remote digest
    local: str  # the store's manifest
    pulled: bool  # False when the store had it (no transfer)


def ensure_bases(
    refs: Iterable[str],
    store: Store,
    registries: Registries,
    lock_path: Path,
    update: bool = False,
    epoch: int = 0,
) -> list[BaseResolution]:
    """Make every registry base reference resolvable in the store under its own text,
    pinned by the lock file. Touches the network only for what the lock does not pin
    or the store does not hold (or everything, with ``update``)."""
    pins = read_lock(lock_path)
    changed = False
    out = []
    for text in sorted(set(refs)):
        ref = Reference.parse(text)
        pinned = ref.digest or (None if update else pins.get(text))
        if pinned is not None:
            local = local_for(store, pinned, host_arch())
            if local is not None:
                if store.resolve(text) != local:
                    store.tag(text, local)
                out.append(BaseResolution(text, pinned, local, False))
                continue
            result = pull_image(store, registries, ref.with_digest(pinned), text, epoch=epoch)
        else:
            result = pull_image(store, registries, ref, text, epoch=epoch)
        if not ref.digest and pins.get(text) != result.remote_digest:
            pins[text] = result.remote_digest
            changed = True
        out.append(BaseResolution(text, result.remote_digest, result.local_digest, True))
    if changed:
        write_lock(lock_path, pins)
    return out


# ---------------------------------------------------------------------------------------
# the remote cache


def parse_repository(text: str, what: str) -> Reference:
    """``REGISTRY/REPO`` for the cache options: no tag, no digest."""
    ref = Reference.parse(text)
    if ref.tag or ref.digest:
        raise UsageError(f"{what} {text}: give a repository (REGISTRY/REPO), without a tag")
    return ref


@dataclass
class CacheStats:
    fetched: int = 0
    misses: int = 0
    published: int = 0
    already: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class RegistryCache:
    """``executor.RemoteCache`` over a registry repository (format: module docstring).

    ``fetch`` verifies the entry (its config names the key asked for), the layer blob
    (digest, size, diff_id) and that the extracted dir regenerates the same diff_id,
    then commits it; nothing else enters the store. ``publish`` pushes what is
    missing, skipping keys whose tag exists."""

    def __init__(
        self,
        registries: Registries,
        repository: str,
        compression: Compression = "none",
        epoch: int = 0,
        jobs: int = 4,
    ) -> None:
        self.ref = parse_repository(repository, "cache")
        self.registries = registries
        self.compression = compression
        self.epoch = epoch
        self.jobs = jobs
        self.stats = CacheStats()

    @property
    def client(self) -> RegistryClient:
        return self.registries.client(self.ref.registry)

    def fetch(self, key: str, store: Store) -> str | None:
        client = self.client
        repo = self.ref.repository
        tag = cache_tag(key)
        found = client.get_manifest(repo, tag)
        if found is None:
            with self.stats.lock:
                self.stats.misses += 1
            return None

        def bad(message: str) -> RegistryError:
            return client.error(f"cache entry {tag}: {message}", repo, found.digest)

        from pipeline.registry import descriptors

        value = found.json()
        config_desc = value.get("config")
        layers = value.get("layers")
        if (
            not isinstance(config_desc, Mapping)
            or config_desc.get("mediaType") != CACHE_CONFIG
            or not isinstance(layers, list)
            or len(layers) != 1
        ):
            raise bad("not a pipeline cache entry")
        config_desc = descriptors([config_desc], bad)[0]
        layer_desc = descriptors(layers, bad)[0]
        data = client.get_blob_bytes(repo, config_desc["digest"], config_desc["size"], 1 << 16)
        try:
            entry = json.loads(data)
            diff_id = str(entry["diff_id"])
            recorded_key = entry["key"]
        except (ValueError, KeyError, TypeError):
            raise bad("its config is not {key, diff_id}") from None
        if recorded_key != key or not is_digest(diff_id):
            raise bad(f"its config is for key {str(recorded_key)[:80]!r}, not {key}")
        if store.has_layer(diff_id):
            return diff_id
        with store.gc_lock(), store.staging() as staging:
            layer = _fetch_layer(
                client, repo, layer_desc, diff_id, staging.path / "layer", self.epoch
            )
            if layer.local_diff_id != diff_id:
                raise client.error(
                    f"cache entry {tag}: the layer's files regenerate {layer.local_diff_id}, "
                    f"not {diff_id}",
                    repo,
                    layer_desc["digest"],
                )
            store.commit_layer(layer.path, diff_id, layer.size)
        with self.stats.lock:
            self.stats.fetched += 1
        return diff_id

    def entry(self, key: str, blob: oci.Descriptor, diff_id: str) -> tuple[oci.Blob, bytes]:
        """(the config blob, the manifest bytes) of one cache entry. Deterministic."""
        config = oci.json_blob({"diff_id": diff_id, "key": key}, CACHE_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": oci.MT_MANIFEST,
            "artifactType": CACHE_ARTIFACT,
            "config": config.descriptor.to_json(),
            "layers": [blob.to_json()],
        }
        return config, canonical_json(manifest)

    def publish(self, entries: Sequence[tuple[str, str]], store: Store) -> None:
        if not entries:
            return
        client = self.client
        repo = self.ref.repository
        pusher = BlobPusher(self.registries, store, self.compression)

        def one(item: tuple[str, str]) -> None:
            key, diff_id = item
            tag = cache_tag(key)
            if client.manifest_digest(repo, tag) is not None:
                with self.stats.lock:
                    self.stats.already += 1
                return
            blob, produce = pusher.layer(diff_id, store.layer_size(diff_id), self.epoch)
            d = blob.descriptor
            pusher.ensure(client, repo, d.digest, d.size, produce)
            config, manifest = self.entry(key, d, diff_id)
            pusher.ensure(
                client, repo, config.descriptor.digest, config.descriptor.size, config.data
            )
            client.put_manifest(repo, tag, manifest, oci.MT_MANIFEST)
            with self.stats.lock:
                self.stats.published += 1

        unique = list(dict.fromkeys(entries))
        with ThreadPoolExecutor(max_workers=max(1, self.jobs)) as pool:
            for _ in pool.map(one, unique):
                pass
