"""Pulling images from a registry into the store.

**Pull** fetches the manifest (an index: the ``linux/<host arch>`` entry), the config
and every layer; each blob is verified (digest and size while streaming, each layer's
uncompressed stream against ``rootfs.diff_ids``) and extracted into a staging dir.
Only when the whole image verified are the layers committed, then the config and
manifest blobs, then the name. A failure leaves the store as it was (the staging dir
is removed). Layers whose tar was not written by us (another tool's ordering or
mtimes) are re-keyed by the tar the store regenerates, and the config and manifest
rewritten to match, as ``pipeline import`` does; the remote digest -> local digest
mapping is kept in the derived cache (``pulled-manifests``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.build.transfers import TransferProgress, blob_progress
from pipeline.digest import hex_of, is_digest, short
from pipeline.errors import StoreError
from pipeline.oci.manifest import Blob, Descriptor, json_blob, manifest_blob
from pipeline.oci.media import LAYER_TYPES, MT_CONFIG, MT_LAYER, document_kind
from pipeline.oci.platform import host_arch
from pipeline.registry.client import Registries, RegistryClient, pick_platform, platforms
from pipeline.registry.reference import Reference, RegistryError
from pipeline.registry.retry import Backoff
from pipeline.registry.transport import Manifest
from pipeline.store import Store

MAX_CONFIG = 16 << 20


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
    declared = ""
    for _ in range(3):
        try:
            kind = document_kind(found.json(), found.media_type, declared)
        except ValueError as exc:
            raise client.error(f"refused: {exc}", repo, found.digest) from None
        if kind == "manifest":
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
        declared = str(entry.get("mediaType") or "")
    raise client.error("image indexes nested too deeply", repo, top)


@dataclass(frozen=True)
class _FetchedLayer:
    path: Path
    diff_id: str  # as the image config says
    local_diff_id: str  # what the store dir regenerates to
    size: int  # local tar size


def fetch_layer(
    client: RegistryClient,
    repository: str,
    desc: Mapping[str, Any],
    diff_id: str,
    dest: Path,
    epoch: int,
    progress: Callable[[int], None] | None = None,
) -> _FetchedLayer:
    """Download one layer blob into ``dest`` (extracted), verifying its blob digest,
    size and uncompressed diff_id; retried from scratch on a broken transfer.
    ``progress(bytes so far)`` while it downloads."""
    from pipeline.fs.extract import extract_layer
    from pipeline.fs.tarwrite import layer_info
    from pipeline.fs.tree import remove_tree

    digest, size = str(desc["digest"]), int(desc["size"])
    where = f"{client.registry}/{repository}@{digest}"
    backoff = Backoff(client.retry)
    while True:
        if dest.exists():
            remove_tree(dest)
        dest.mkdir()
        dest.chmod(0o755)
        try:
            with client.open_blob(repository, digest, size, progress) as reader:
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
    progress: TransferProgress | None = None,
) -> PullResult:
    """Pull ``ref`` into the store under ``name`` (see the module docstring);
    ``progress`` hears each layer's download (labelled ``pull REF layer I/N``)."""
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

    from pipeline.registry.client import descriptors

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
    except (ValueError, KeyError, TypeError, RecursionError):
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
            label = f"pull {ref} layer {i + 1}/{len(layer_descs)} {short(str(desc['digest']))}"
            each = blob_progress(progress, label, int(desc["size"]))
            dest = staging.path / f"layer{i:03d}"
            layer = fetch_layer(client, repo, desc, diff_id, dest, epoch, each)
            nbytes += int(desc["size"])
            done[diff_id] = layer
            fetched.append(layer)
        # everything verified: commit layers, then config and manifest, then the name
        local_ids = []
        sizes = []
        for diff_id, got in zip(diff_ids, fetched, strict=True):
            if got is None:
                local_ids.append(diff_id)
                sizes.append(store.layer_size(diff_id))
                continue
            if got.path.exists():
                store.commit_layer(got.path, got.local_diff_id, got.size, epoch)
            local_ids.append(got.local_diff_id)
            sizes.append(got.size)
        rewritten = local_ids != diff_ids
        if rewritten:
            config["rootfs"]["diff_ids"] = local_ids
            config_blob = json_blob(config, MT_CONFIG)
        else:
            config_blob = Blob(
                config_data,
                Descriptor(MT_CONFIG, config_desc["digest"], len(config_data)),
            )
        store.put_blob(config_blob)
        local_manifest = manifest_blob(
            config_blob.descriptor,
            [Descriptor(MT_LAYER, d, s) for d, s in zip(local_ids, sizes, strict=True)],
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
