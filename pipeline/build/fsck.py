"""``pipeline fsck``: check a store against itself, and repair it.

:func:`fsck` verifies

* the index file: readable, not truncated, ``PRAGMA integrity_check`` clean, not held
  locked by another process;
* every blob against the digest it is named by;
* every layer directory against its diff_id: its tar, regenerated with the epoch
  recorded for it, must hash to its name (a layer with no recorded epoch is tried
  with the epochs the store's other layers use, ``SOURCE_DATE_EPOCH`` and 0);
* the index against both: recorded layers that are missing or damaged, cache keys
  that point at them, names whose manifest, config or layers are missing or damaged.

With ``repair``, what is damaged is dropped (blob files, layer directories) and the
index is rebuilt from what verifies: the rows still readable in the index (salvaged
page by page when the file is damaged, the damaged file kept as
``index.db.damaged-N``), completed from ``index.journal``, keeping only layers,
keys and names whose files verify, and adding verified layer directories the index
lost. A later build recreates only what was dropped. Repair refuses to run while a
build holds the store.

Every finding is one line that starts with the path or name it is about.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import storedb
from pipeline.digest import DIGEST_PREFIX, is_digest
from pipeline.errors import PipelineError, StoreError
from pipeline.store import Store
from pipeline.storedb import JournalState

HISTORY = ("builds", "build_nodes")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Finding:
    where: str  # a path in the store, or a name
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass(frozen=True)
class FsckReport:
    findings: tuple[Finding, ...]
    blobs: int  # checked
    layers: int
    names: int
    repaired: tuple[str, ...] = ()  # what --repair did, one line each

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        counts = f"{self.blobs} blobs, {self.layers} layers, {self.names} names"
        if self.ok:
            return f"fsck: ok: {counts}"
        state = "repaired" if self.repaired else "found"
        return f"fsck: {len(self.findings)} problem(s) {state}: {counts} checked"


@dataclass
class _Check:
    root: Path
    environ: Mapping[str, str]
    findings: list[Finding] = field(default_factory=list)
    bad_blobs: set[str] = field(default_factory=set)
    bad_layers: set[str] = field(default_factory=set)  # dirs to remove

    def find(self, where: Path | str, problem: str) -> None:
        self.findings.append(Finding(str(where), problem))


def fsck(root: Path, repair: bool = False, environ: Mapping[str, str] | None = None) -> FsckReport:
    """Check (and with ``repair``, repair) the store at ``root``; see the module."""
    environ = os.environ if environ is None else environ
    root = Path(root).absolute()
    readonly = storedb.readonly(root)  # StoreError for a file or an unreachable store
    if not (root / storedb.INDEX).exists() and not (root / "layers").is_dir():
        raise StoreError(f"{root}: not a pipeline store (no {storedb.INDEX}, no layers/)")
    if readonly:
        raise StoreError(f"{root}: fsck needs write access to the store (its index's locks)")
    check = _Check(root, environ)
    index = root / storedb.INDEX
    state, history, store = _open_index(check, index)
    blobs = _check_blobs(check)
    layers = _check_layers(check, state)
    good = _good_state(check, state)
    if not repair:
        if store is not None:
            store.close()
        return FsckReport(tuple(check.findings), blobs, layers, len(state.names))
    repaired = _repair(check, store, good, history)
    return FsckReport(tuple(check.findings), blobs, layers, len(state.names), repaired)


# ---------------------------------------------------------------------------------------
# the index


def _open_index(
    check: _Check, index: Path
) -> tuple[JournalState, dict[str, list[tuple[object, ...]]], Store | None]:
    """(what the index holds, its build history, an open Store when it is sound)."""
    if index.exists() and storedb.is_locked(index, 2.0):
        check.find(index, "locked by another process (if no pipeline command runs, repair)")
    else:
        found = storedb.problems(index) if index.exists() else []
        for problem in found:
            check.find(index, f"damaged: {problem}")
        if not found:
            try:
                store = Store(check.root)
            except StoreError as exc:
                check.find(index, f"cannot be opened: {exc}")
            else:
                history = storedb.salvage(index, HISTORY, immutable=False)
                return store.index_state(), history, store
    rows = storedb.salvage(index, ("layers", "cache", "images", *HISTORY))
    state = storedb.Journal(check.root / storedb.JOURNAL).read()
    for row in rows["layers"]:  # diff_id, size, created, epoch
        epoch = row[3] if len(row) > 3 else None
        state.layers[str(row[0])] = (int(row[1]), None if epoch is None else int(epoch))
    for row in rows["cache"]:  # key, diff_id, created_by, seconds, created
        state.keys[str(row[0])] = (str(row[1]), str(row[2]), float(row[3]))
    for row in rows["images"]:  # name, manifest, updated
        state.names[str(row[0])] = str(row[1])
    return state, {t: rows[t] for t in HISTORY}, None


# ---------------------------------------------------------------------------------------
# files


def _check_blobs(check: _Check) -> int:
    folder = check.root / "blobs" / "sha256"
    count = 0
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        if path.name.startswith("."):
            continue  # a temp file of a write in progress
        count += 1
        digest = DIGEST_PREFIX + path.name
        if not is_digest(digest) or not path.is_file():
            check.find(path, "not a blob (its name is not a sha256 digest)")
            check.bad_blobs.add(path.name)
            continue
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        actual = DIGEST_PREFIX + h.hexdigest()
        if actual != digest:
            check.find(path, f"corrupt blob: its bytes hash to {actual}")
            check.bad_blobs.add(path.name)
    return count


def _check_layers(check: _Check, state: JournalState) -> int:
    """Verify every layer dir; record the epoch found for dirs the index lacks."""
    from pipeline.fs.tarwrite import layer_info

    folder = check.root / "layers"
    known = {e for _, e in state.layers.values() if e is not None}
    env_epoch = check.environ.get("SOURCE_DATE_EPOCH", "").strip()
    candidates = sorted(known | ({int(env_epoch)} if env_epoch.isdigit() else set()) | {0})
    count = 0
    on_disk = set()
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        count += 1
        diff_id = DIGEST_PREFIX + path.name
        if not is_digest(diff_id) or not path.is_dir() or path.is_symlink():
            check.find(path, "not a layer directory")
            check.bad_layers.add(path.name)
            continue
        on_disk.add(diff_id)
        recorded = state.layers.get(diff_id)
        tries = [recorded[1]] if recorded and recorded[1] is not None else candidates
        found = None
        for epoch in tries:
            try:
                info = layer_info(path, epoch)
            except (PipelineError, OSError) as exc:
                check.find(path, f"unreadable layer: {exc}")
                break
            if info.diff_id == diff_id:
                found = (info.size, epoch)
                break
        else:
            shown = f"epoch {tries[0]}" if len(tries) == 1 else "any epoch in use"
            check.find(path, f"corrupt layer: its files no longer give {diff_id} ({shown})")
        if found is None:
            check.bad_layers.add(path.name)
        elif recorded is None:
            check.find(path, "layer missing from the index (verified; repair adds it back)")
            state.layers[diff_id] = found
    for diff_id in sorted(set(state.layers) - on_disk):
        check.find(diff_id, "recorded layer is missing from layers/")
    return count


# ---------------------------------------------------------------------------------------
# what verifies


def _good_state(check: _Check, state: JournalState) -> JournalState:
    """``state`` without what does not verify, with a finding for each drop."""
    good = JournalState()
    bad = {DIGEST_PREFIX + n for n in check.bad_layers}
    for diff_id, rec in state.layers.items():
        if diff_id not in bad and (check.root / "layers" / diff_id[7:]).is_dir():
            good.layers[diff_id] = rec
    for key, (diff_id, by, seconds) in state.keys.items():
        if diff_id in good.layers:
            good.keys[key] = (diff_id, by, seconds)
        else:
            check.find(key, f"cache key points at a missing or damaged layer {diff_id}")
    for name, manifest in state.names.items():
        problem = _image_problem(check, manifest, good)
        if problem:
            check.find(name, problem)
        else:
            good.names[name] = manifest
    return good


def _blob(check: _Check, digest: str) -> bytes | None:
    if not is_digest(digest) or digest[7:] in check.bad_blobs:
        return None
    try:
        return (check.root / "blobs" / "sha256" / digest[7:]).read_bytes()
    except OSError:
        return None


def _image_problem(check: _Check, manifest_digest: str, good: JournalState) -> str:
    import json

    data = _blob(check, manifest_digest)
    if data is None:
        return f"its manifest {manifest_digest} is missing or damaged"
    try:
        manifest = json.loads(data)
        config_digest = str(manifest["config"]["digest"])
        config_data = _blob(check, config_digest)
        if config_data is None:
            return f"its config {config_digest} is missing or damaged"
        diff_ids = json.loads(config_data)["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return f"its manifest {manifest_digest} is not an image manifest"
    lost = [d for d in diff_ids if d not in good.layers]
    if lost:
        return f"its layer {lost[0]} is missing or damaged" + (
            f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
        )
    return ""


# ---------------------------------------------------------------------------------------
# repair


def _repair(
    check: _Check,
    store: Store | None,
    good: JournalState,
    history: dict[str, list[tuple[object, ...]]],
) -> tuple[str, ...]:
    done: list[str] = []
    index = check.root / storedb.INDEX
    if store is None:
        if index.exists():
            aside = storedb.set_aside(index)
            done.append(f"{index}: damaged index kept as {aside.name}; a new one was written")
        store = Store(check.root)
    try:
        with store.gc_lock(exclusive=True, wait=False):
            damaged = [store.root / "blobs" / "sha256" / n for n in sorted(check.bad_blobs)]
            damaged += [store.layers_dir / n for n in sorted(check.bad_layers)]
            for path in damaged:
                store.discard(path)
                done.append(f"{path}: removed")
            store.rebuild_index(good, {t: [tuple(r) for r in rows] for t, rows in history.items()})
            done.append(
                f"{index}: rebuilt with {len(good.layers)} layers, {len(good.keys)} cache keys, "
                f"{len(good.names)} names"
            )
    finally:
        store.close()
    return tuple(done)
