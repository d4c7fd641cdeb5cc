"""The registry-backed remote layer cache.

**Remote cache** (:class:`RegistryCache`): one small OCI manifest per cache key in the
cache repository, tagged ``cache-<64 hex of the key>``: its config (media type
``application/vnd.pipeline.cache.config.v1+json``) is ``{"diff_id", "key"}`` and its
one layer is the layer blob. Entries are immutable and independent (no shared index
to race on); a key already present is left alone.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipeline.build.pull import fetch_layer
from pipeline.build.push import BlobPusher, Compression
from pipeline.build.transfers import TransferProgress, blob_progress
from pipeline.digest import DiffID, canonical_json, hex_of, is_digest, sha256_bytes
from pipeline.errors import UsageError
from pipeline.oci.manifest import Blob, Descriptor, json_blob
from pipeline.oci.media import MT_MANIFEST
from pipeline.registry.client import Registries, RegistryClient
from pipeline.registry.reference import Reference, RegistryError
from pipeline.store import Store

CACHE_ARTIFACT = "application/vnd.pipeline.cache.v1+json"
CACHE_CONFIG = "application/vnd.pipeline.cache.config.v1+json"
CACHE_TAG_PREFIX = "cache-"


def cache_tag(key: str) -> str:
    """The tag of a cache key's entry: ``cache-`` + the key's 64 hex digits."""
    return CACHE_TAG_PREFIX + hex_of(key)


# ---------------------------------------------------------------------------------------
# the remote cache


def parse_repository(text: str, what: str) -> Reference:
    """``REGISTRY/REPO`` for the cache options: no tag, no digest."""
    ref = Reference.parse(text)
    if ref.tag or ref.digest:
        raise UsageError(f"{what} {text}: give a repository (REGISTRY/REPO), without a tag")
    return ref


@dataclass(frozen=True)
class CacheHit:
    """A cache entry found in the repository: the layer's diff_id, its blob's
    descriptor (``digest``, ``size``, ``mediaType``) and the entry manifest's digest."""

    key: str
    diff_id: DiffID
    layer: Mapping[str, Any]
    manifest: str

    @property
    def size(self) -> int | None:
        """The layer's tar size when the blob is the uncompressed tar (digest = diff_id),
        else None (a compressed blob's size is not the tar's)."""
        return int(self.layer["size"]) if self.layer.get("digest") == self.diff_id else None


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

    def lookup(self, key: str, store: Store | None = None) -> CacheHit | None:
        """The entry recorded for ``key`` (checked: its config names ``key``), without
        fetching the layer; None when the repository has no entry for ``key``. With
        ``store``, entry configs are kept in its derived cache (``cache-entries``, by
        digest, verified on use), so a repeated lookup is one request."""
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

        from pipeline.registry.client import descriptors

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
        config_digest = str(config_desc["digest"])
        data = store.cache_get("cache-entries", hex_of(config_digest)) if store else None
        if data is None or sha256_bytes(data) != config_digest:
            data = client.get_blob_bytes(repo, config_digest, config_desc["size"], 1 << 16)
            if store is not None:
                store.cache_put("cache-entries", hex_of(config_digest), data)
        try:
            entry = json.loads(data)
            diff_id = str(entry["diff_id"])
            recorded_key = entry["key"]
        except (ValueError, KeyError, TypeError):
            raise bad("its config is not {key, diff_id}") from None
        if recorded_key != key or not is_digest(diff_id):
            raise bad(f"its config is for key {str(recorded_key)[:80]!r}, not {key}")
        return CacheHit(key, DiffID(diff_id), dict(layer_desc), found.digest)  # checked above

    def fetch(
        self, key: str, store: Store, progress: TransferProgress | None = None
    ) -> DiffID | None:
        hit = self.lookup(key)
        if hit is None:
            return None
        diff_id = hit.diff_id
        if store.has_layer(diff_id):
            return diff_id
        what = f"cache entry {cache_tag(key)}"
        self.fetch_layer(hit.layer, diff_id, store, what, progress)
        with self.stats.lock:
            self.stats.fetched += 1
        return diff_id

    def fetch_layer(
        self,
        desc: Mapping[str, Any],
        diff_id: str,
        store: Store,
        what: str = "layer",
        progress: TransferProgress | None = None,
    ) -> None:
        """Download the blob ``desc`` of the repository into ``store`` as the layer
        ``diff_id``: digest, size and diff_id verified, and the extracted dir must
        regenerate ``diff_id``; committed atomically, or nothing enters the store.
        ``progress`` hears the download (labelled ``cache pull WHAT``)."""
        client = self.client
        repo = self.ref.repository
        each = blob_progress(progress, f"cache pull {what}", int(desc["size"]))
        with store.gc_lock(), store.staging() as staging:
            dest = staging.path / "layer"
            layer = fetch_layer(client, repo, desc, diff_id, dest, self.epoch, each)
            if layer.local_diff_id != diff_id:
                raise client.error(
                    f"{what}: the layer's files regenerate {layer.local_diff_id}, not {diff_id}",
                    repo,
                    str(desc["digest"]),
                )
            store.commit_layer(layer.path, diff_id, layer.size, self.epoch)

    def entry(self, key: str, blob: Descriptor, diff_id: str) -> tuple[Blob, bytes]:
        """(the config blob, the manifest bytes) of one cache entry. Deterministic."""
        config = json_blob({"diff_id": diff_id, "key": key}, CACHE_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "artifactType": CACHE_ARTIFACT,
            "config": config.descriptor.to_json(),
            "layers": [blob.to_json()],
        }
        return config, canonical_json(manifest)

    def publish(
        self,
        entries: Sequence[tuple[str, DiffID]],
        store: Store,
        progress: TransferProgress | None = None,
    ) -> None:
        if not entries:
            return
        client = self.client
        repo = self.ref.repository
        pusher = BlobPusher(self.registries, store, self.compression)

        def one(item: tuple[str, DiffID]) -> None:
            key, diff_id = item
            tag = cache_tag(key)
            if client.manifest_digest(repo, tag) is not None:
                with self.stats.lock:
                    self.stats.already += 1
                return
            blob, produce = pusher.layer(diff_id, store.layer_size(diff_id), self.epoch)
            d = blob.descriptor
            label = f"cache push {tag[:18]}"
            pusher.ensure(client, repo, d.digest, d.size, produce, progress, label)
            config, manifest = self.entry(key, d, diff_id)
            pusher.ensure(
                client, repo, config.descriptor.digest, config.descriptor.size, config.data
            )
            client.put_manifest(repo, tag, manifest, MT_MANIFEST)
            with self.stats.lock:
                self.stats.published += 1

        unique = list(dict.fromkeys(entries))
        with ThreadPoolExecutor(max_workers=max(1, self.jobs)) as pool:
            for _ in pool.map(one, unique):
                pass
