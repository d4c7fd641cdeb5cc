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

A build whose every node is recorded needs nothing from the registry, so it is given
a :class:`RecordedRepository` (the name alone) instead of a registry cache: the
registry stack is not even loaded (:func:`recorded_caches`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.digest import DiffID, canonical_json, is_digest
from pipeline.errors import PipelineError
from pipeline.graph import BuildGraph
from pipeline.store import Store

Layer = tuple[DiffID, int]  # (diff_id, tar size)
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
            out[key] = (DiffID(diff_id), size)  # checked: a digest
    return out


def remember(store: Store, repository: str, layers: Mapping[str, Layer]) -> None:
    """Record each (key -> layer) of ``layers`` as an entry of ``repository`` and
    each layer's blob as present there. Idempotent; unchanged records are not
    rewritten."""
    from pipeline.build.push import remember_blob  # the registry stack: only when used

    registry, _, repo = repository.partition("/")
    for key, (diff_id, size) in layers.items():
        name = _name(repository, key)
        data = canonical_json({"diff_id": diff_id, "key": key, "size": size})
        if store.cache_get(_KIND, name) != data:
            store.cache_put(_KIND, name, data)
        remember_blob(store, registry, repo, diff_id)


class RecordedRepository:
    """The ``--cache-to`` of a remote cluster build that needs nothing from it (see
    :func:`recorded_caches`): only its name is used, so the registry stack is neither
    loaded nor connected."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def fetch(self, key: str, store: Store) -> str | None:
        raise AssertionError(f"{self.ref}: a recorded no-op fetches nothing")

    def publish(self, entries: Sequence[tuple[str, str]], store: Store) -> None:
        raise AssertionError(f"{self.ref}: a recorded no-op publishes nothing")


def recorded_caches(
    graph: BuildGraph,
    store: Store,
    targets: Sequence[str],
    remote: bool,
    cache_from: str | None,
    cache_to: str | None,
) -> dict[str, Any] | None:
    """``BuildOptions`` cache arguments for a no-op on a remote cluster: when the
    client's records name an entry of the ``cache_to`` repository for every node the
    targets need, the build settles from them alone, so the repository is named but
    not contacted (not even pinged: every record came from it). None otherwise (and
    when not ``remote``, for an unparsable name or a different ``cache_from``): then
    the caches are made and checked as usual."""
    from pipeline.registry.reference import Reference

    if not remote or cache_to is None or cache_from not in (None, cache_to):
        return None
    try:
        ref = Reference.parse(cache_to)
    except PipelineError:
        return None
    if ref.tag or ref.digest:
        return None
    keys = [k for k in graph.closure(targets) if graph.node(k).kind != "base"]
    if len(recorded(store, f"{ref.registry}/{ref.repository}", keys)) < len(keys):
        return None
    repo = RecordedRepository(ref)
    return {"cache_from": repo if cache_from else None, "cache_to": repo}
