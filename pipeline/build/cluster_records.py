"""What a client of a remote cluster remembers about the cache repository, in its
store's derived cache (a lost or missing record only costs registry requests).

* **Entries** (``cluster-entries``): for a (repository, cache key), the layer its
  cache entry names, as (diff_id, tar size). Written for every entry the client saw
  in the repository (a lookup hit) or that a worker settled for it. Cache entries are
  immutable (a key's tag is written once), so a record stays true while the entry
  exists. A build whose every node has a record settles without a registry request
  (a no-op); one with any node unrecorded looks every key up again (the workers will
  need the layers under what they build, so the repository is asked, not the
  records).
* **Blob locations** (``pushed-blobs`` of :mod:`pipeline.build.push`): every layer a
  cluster settled is in the cache repository (uncompressed: blob digest = diff_id),
  so a later push mounts it from there instead of routing it through this machine.

Both are per repository: another ``--cache-to`` looks everything up again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence

from pipeline.build.push import remember_blob
from pipeline.digest import canonical_json, is_digest
from pipeline.store import Store

Layer = tuple[str, int]  # (diff_id, tar size)
_KIND = "cluster-entries"


def _name(repository: str, key: str) -> str:
    return hashlib.sha256(f"{repository}\0{key}".encode()).hexdigest()


def recorded(store: Store, repository: str, keys: Sequence[str]) -> dict[str, Layer]:
    """The recorded layer of each of ``keys`` in ``repository`` (``registry/repo``)
    that has a record; malformed records are ignored."""
    out: dict[str, Layer] = {}
    for key in keys:
        raw = store.cache_get(_KIND, _name(repository, key))
        if raw is None:
            continue
        try:
            value = json.loads(raw)
            diff_id, size = value["diff_id"], value["size"]
        except (ValueError, KeyError, TypeError):
            continue
        if value.get("key") == key and is_digest(diff_id) and isinstance(size, int):
            out[key] = (diff_id, size)
    return out


def remember(store: Store, repository: str, layers: Mapping[str, Layer]) -> None:
    """Record each (key -> layer) of ``layers`` as an entry of ``repository`` and
    each layer's blob as present there. Idempotent; unchanged records are not
    rewritten."""
    registry, _, repo = repository.partition("/")
    for key, (diff_id, size) in layers.items():
        name = _name(repository, key)
        data = canonical_json({"diff_id": diff_id, "key": key, "size": size})
        if store.cache_get(_KIND, name) != data:
            store.cache_put(_KIND, name, data)
        remember_blob(store, registry, repo, diff_id)


def blobs_in(store: Store, repository: str, diff_ids: Iterable[str]) -> None:
    """Record the blobs ``diff_ids`` as present in ``repository`` (``registry/repo``)."""
    registry, _, repo = repository.partition("/")
    for diff_id in dict.fromkeys(diff_ids):
        remember_blob(store, registry, repo, diff_id)
