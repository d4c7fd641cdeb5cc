"""Pushing images from the store to a registry.

**Push** sends each layer as the deterministic tar regenerated from its store dir
(spooled to a staging file and checked against its diff_id before a byte leaves;
a corrupted layer dir is a StoreError, never an upload). Uncompressed by default, so
blob digest = diff_id and the registry's manifest digest equals the store's; with
``compression="gzip"`` a gzip stream (level 6, no name, mtime 0) is sent instead
and the manifest is rewritten to point at it. Before uploading, a blob is looked up
(HEAD) and, when it was pushed earlier to another repository of the same registry,
mounted from there. Where blobs went is remembered in the store's derived cache
(``pushed-blobs``; a miss only costs an upload). Config before manifest, manifest
last, so a tag never names a manifest whose blobs are missing.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, cast

from pipeline.build.transfers import TransferProgress, blob_progress
from pipeline.digest import (
    DiffID,
    Digest,
    canonical_json,
    hex_of,
    is_digest,
    short,
    uncompressed_blob,
)
from pipeline.errors import StoreError
from pipeline.oci.manifest import Descriptor, manifest_blob
from pipeline.oci.media import MT_CONFIG, MT_LAYER, MT_LAYER_GZIP, MT_MANIFEST
from pipeline.registry.client import Registries, RegistryClient
from pipeline.registry.reference import Reference
from pipeline.store import Store

Compression = Literal["none", "gzip"]
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
    def digest(self) -> Digest:
        return Digest("sha256:" + self.hash.hexdigest())


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
    descriptor: Descriptor
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
        self._gzip: dict[str, tuple[Digest, int]] = {}

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
        produce: Callable[[Path], object] | bytes,
        progress: TransferProgress | None = None,
        label: str = "",
    ) -> str:
        """Make ``digest`` present in ``repository``. ``produce`` writes the blob's bytes
        to a path (layers) or is the bytes (configs). Returns "present", "mounted" or
        "uploaded". ``progress`` hears an upload's bytes under ``label``."""
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
                # announced (at 0 bytes) before the tar is spooled, which takes a while too
                each = blob_progress(progress, label or f"push {short(digest)}", size)
                produce(path)
                client.upload_blob(repository, digest, size, path, location, each)
        self._remember(registry, repository, digest)
        return "uploaded"

    def layer(
        self, diff_id: DiffID, size: int, epoch: int
    ) -> tuple[_LayerBlob, Callable[[Path], object]]:
        """The descriptor of a layer's blob in the chosen compression, and the function
        that writes exactly those bytes (checking the diff_id on the way)."""
        if self.compression == "none":
            desc = Descriptor(MT_LAYER, uncompressed_blob(diff_id), size)
            return _LayerBlob(desc, diff_id), lambda p: self._write_layer(diff_id, p, epoch, False)
        known = self._gzip_known(diff_id)
        if known is None:
            with self.store.staging() as staging:
                path = staging.path / "blob"
                known = self._write_layer(diff_id, path, epoch, True)
        digest, blob_size = known
        desc = Descriptor(MT_LAYER_GZIP, digest, blob_size)

        def produce(path: Path) -> None:
            made = self._write_layer(diff_id, path, epoch, True)
            if made != (digest, blob_size):
                raise StoreError(
                    f"{self.store.root}: gzip of layer {diff_id} is not reproducible "
                    f"(made {made[0]}, expected {digest})"
                )

        return _LayerBlob(desc, diff_id), produce

    def _gzip_known(self, diff_id: str) -> tuple[Digest, int] | None:
        with self._lock:
            if diff_id in self._gzip:
                return self._gzip[diff_id]
        raw = self.store.cache_get("gzip-layers", hex_of(diff_id))
        if raw:
            try:
                value = json.loads(raw)
                if is_digest(value["digest"]) and isinstance(value["size"], int):
                    return Digest(str(value["digest"])), int(value["size"])
            except (ValueError, KeyError, TypeError):
                return None
        return None

    def _write_layer(
        self, diff_id: str, path: Path, epoch: int, compress: bool
    ) -> tuple[Digest, int]:
        """Write the layer's tar (gzip'd when ``compress``) to ``path``; StoreError if
        the dir no longer gives ``diff_id``. Returns (blob digest, blob size)."""
        from pipeline.fs.tarwrite import write_layer

        layer_dir = self.store.layer_path(diff_id)
        epoch = self.store.layer_epoch(diff_id, epoch) or 0  # the epoch its tar was made with
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
    progress: TransferProgress | None = None,
) -> list[PushResult]:
    """Push the stored image ``name`` to every target (``registry/repository:tag``):
    blobs once per repository, then the manifest under each tag. ``progress`` hears
    each layer upload (labelled ``push REPO layer I/N``)."""
    from pipeline.build.images import load_image

    image = load_image(store, name)
    pusher = pusher or BlobPusher(registries, store, compression)
    config = store.get_blob(image.config_digest)
    layers = [pusher.layer(d, s, epoch) for d, s in image.layers]
    if compression == "none":
        manifest_bytes = store.get_blob(image.manifest_digest)
    else:
        config_desc = Descriptor(MT_CONFIG, image.config_digest, len(config))
        manifest_bytes = manifest_blob(config_desc, [lb.descriptor for lb, _ in layers]).data
    results = []
    by_repo: dict[tuple[str, str], list[Reference]] = {}
    for ref in targets:
        by_repo.setdefault((ref.registry, ref.repository), []).append(ref)
    for (registry, repository), refs in by_repo.items():
        client = registries.client(registry)
        stats = PushStats()
        for i, (blob, produce) in enumerate(layers):
            d = blob.descriptor
            label = f"push {registry}/{repository} layer {i + 1}/{len(layers)} {short(d.digest)}"
            outcome = pusher.ensure(client, repository, d.digest, d.size, produce, progress, label)
            stats.add(outcome, d.size)
        stats.add(
            pusher.ensure(client, repository, image.config_digest, len(config), config),
            len(config),
        )
        for ref in refs:
            digest = client.put_manifest(
                repository, ref.tag or "latest", manifest_bytes, MT_MANIFEST
            )
            results.append(
                PushResult(str(ref.with_tag(ref.tag or "latest")), digest, len(layers), stats)
            )
    return results
