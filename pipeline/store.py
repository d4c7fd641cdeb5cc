"""The local content-addressed store. The only module that writes into a store.

Layout under the store root::

    oci-layout, blobs/sha256/<hex>   JSON blobs (image configs, manifests), verified on read
    layers/<hex>/                    each layer once, unpacked in overlay upperdir format,
                                     named by its diff_id; used directly as overlay lowerdirs
    cache/<id>/                      build-time cache mounts (pip downloads, ...)
    tmp/<token>/ + tmp/<token>.lock  staging of running builds; a lock nobody holds is debris
    locks/<hex>.lock                 one lock per cache key while it is being built
    gc.lock                          builds hold it shared, prune exclusive
    index.db                         SQLite (WAL): cache keys -> layers, names -> manifests,
                                     build records, the inputs of each node's key

Contracts:
* Atomic: a blob appears by temp -> fsync -> rename; a layer dir appears by one rename
  of a finished staging dir; an index row is written only after what it points to exists.
  A process killed at any moment leaves at most debris in tmp/, removed by the next open.
* Idempotent: committing a layer or blob that is already there keeps the existing one.
* Layer bytes are kept once. Their tar form (what digests describe) is recomputed from
  the directory when exported and checked against the recorded diff_id.
* Several processes may use one store at once (SQLite WAL, per-key file locks).
* Private: the root, blobs/, layers/, cache/ and tmp/ are 0700; a store found wider is
  tightened on open and ``Store.notes`` says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.digest import hex_of, is_digest, sha256_bytes
from pipeline.errors import StoreError
from pipeline.oci.manifest import Blob

SCHEMA = """
CREATE TABLE IF NOT EXISTS layers (
    diff_id TEXT PRIMARY KEY, size INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY, diff_id TEXT NOT NULL, created_by TEXT NOT NULL,
    seconds REAL NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    name TEXT PRIMARY KEY, manifest TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS builds (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL, finished REAL,
    status TEXT NOT NULL, command TEXT NOT NULL, summary TEXT);
CREATE TABLE IF NOT EXISTS build_nodes (
    build INTEGER NOT NULL, key TEXT NOT NULL, label TEXT NOT NULL, apps TEXT NOT NULL,
    outcome TEXT NOT NULL, seconds REAL NOT NULL, diff_id TEXT);
CREATE TABLE IF NOT EXISTS node_inputs (key TEXT PRIMARY KEY, material TEXT NOT NULL);
"""


def default_store_path() -> Path:
    """``$PIPELINE_STORE``, else ``$XDG_CACHE_HOME/pipeline``, else ``~/.cache/pipeline``."""
    env = os.environ.get("PIPELINE_STORE")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "pipeline"


@dataclass(frozen=True)
class LayerRecord:
    diff_id: str
    size: int


@dataclass(frozen=True)
class BuildRecord:
    """One row of ``builds``: times are Unix seconds; ``finished`` is None while running."""

    id: int
    started: float
    finished: float | None
    status: str
    command: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class BuildNodeRecord:
    """One node's outcome in one build (``apps`` are image ids such as ``app.web``)."""

    build: int
    key: str
    label: str
    apps: tuple[str, ...]
    outcome: str
    seconds: float
    diff_id: str | None


@dataclass(frozen=True)
class Staging:
    """A private scratch dir in tmp/, removed by ``Store.staging`` on exit."""

    path: Path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=False)


PRIVATE_DIRS = ("", "blobs", "blobs/sha256", "layers", "cache", "tmp")  # kept 0700


def _tighten(root: Path) -> tuple[str, ...]:
    """Make the store root and the dirs holding image content 0700, as containers/storage
    and BuildKit keep theirs: stored layers hold setuid binaries and 0777 dirs, which no
    other local user may reach. Returns one note per dir that was wider (or could not be
    tightened), for the CLI to print; () when all were private already."""
    notes = []
    for sub in PRIVATE_DIRS:
        path = root / sub if sub else root
        mode = path.stat().st_mode & 0o7777
        if mode & 0o077 == 0:
            continue
        try:
            path.chmod(0o700)
        except OSError as exc:
            notes.append(f"{path}: mode {mode:04o} is open to other users; chmod failed: {exc}")
            continue
        notes.append(f"{path}: tightened mode {mode:04o} to 0700 (store content is private)")
    return tuple(notes)


class Store:
    """A handle on one store directory; thread-safe. Opening cleans debris.

    ``notes``: one line per store dir whose permissions opening had to tighten (see
    :data:`PRIVATE_DIRS`); empty for a new store or one already private.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.root.parent.mkdir(parents=True, exist_ok=True)
        for sub in PRIVATE_DIRS:
            (self.root / sub).mkdir(mode=0o700, exist_ok=True)
        (self.root / "locks").mkdir(exist_ok=True)
        self.notes = _tighten(self.root)
        layout = self.root / "oci-layout"
        if not layout.exists():
            self._write_atomic(layout, b'{"imageLayoutVersion":"1.0.0"}')
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.root / "index.db", timeout=60, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        with self._lock:
            self._db.executescript(SCHEMA)
        self.clean_debris()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- paths ---------------------------------------------------------------------

    @property
    def layers_dir(self) -> Path:
        return self.root / "layers"

    def layer_path(self, diff_id: str) -> Path:
        return self.layers_dir / hex_of(diff_id)

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / hex_of(digest)

    def cache_mount_dir(self, mount_id: str) -> Path:
        """The persistent dir for a build-time cache mount (created on demand)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in mount_id)
        safe = safe.lstrip(".") or "default"
        path = self.root / "cache" / safe
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- small keyed caches (parsed specs) -------------------------------------------

    def cache_get(self, kind: str, key: str) -> bytes | None:
        """Bytes put under (kind, hex key), or None. For derived data only: a miss is
        always safe."""
        if not key.isalnum():
            return None
        try:
            return (self.root / "cache" / f".{kind}" / key).read_bytes()
        except OSError:
            return None

    def cache_put(self, kind: str, key: str, data: bytes) -> None:
        """Store derived bytes under (kind, hex key); atomic, last writer wins."""
        if not key.isalnum():
            raise StoreError(f"{self.root}: bad cache key {key!r}")
        folder = self.root / "cache" / f".{kind}"
        folder.mkdir(parents=True, exist_ok=True)
        self._write_atomic(folder / key, data)

    # -- sqlite --------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _write(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return cur.lastrowid or 0

    # -- staging and locks ---------------------------------------------------------

    @contextlib.contextmanager
    def staging(self) -> Iterator[Staging]:
        """A fresh dir in tmp/ held by a lock file; removed on exit, whatever happens.
        If the process is killed, the next ``clean_debris`` removes it."""
        token = uuid.uuid4().hex
        lock_path = self.root / "tmp" / f"{token}.lock"
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = self.root / "tmp" / token
        path.mkdir()
        try:
            yield Staging(path)
        finally:
            with contextlib.suppress(OSError):
                _rmtree(path)
            os.close(fd)
            lock_path.unlink(missing_ok=True)

    def clean_debris(self) -> int:
        """Remove staging dirs whose owner is gone. Safe while others build. Returns count."""
        removed = 0
        tmp = self.root / "tmp"
        for entry in tmp.iterdir():
            if entry.suffix == ".lock":
                continue
            lock_path = tmp / f"{entry.name}.lock"
            try:
                fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                _rmtree(entry)
                removed += 1
            finally:
                lock_path.unlink(missing_ok=True)
                os.close(fd)
        return removed

    @contextlib.contextmanager
    def key_lock(self, key: str) -> Iterator[None]:
        """Exclusive per-cache-key lock across processes (blocks until free)."""
        fd = os.open(self.root / "locks" / f"{hex_of(key)}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def gc_lock(self, exclusive: bool = False, wait: bool = True) -> Iterator[None]:
        """Builds hold this shared; prune holds it exclusive so it never removes what a
        running build uses. Raises StoreError when ``wait`` is False and it is taken."""
        fd = os.open(self.root / "gc.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            flags = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            try:
                fcntl.flock(fd, flags | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise StoreError(f"{self.root}: a build is using the store; try again") from None
            yield
        finally:
            os.close(fd)

    # -- blobs ---------------------------------------------------------------------

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def put_blob(self, blob: Blob) -> str:
        """Store a (small) blob; idempotent and atomic. Returns its digest."""
        digest = blob.descriptor.digest
        if sha256_bytes(blob.data) != digest:
            raise StoreError(f"{self.root}: blob does not match its digest {digest}")
        path = self.blob_path(digest)
        if not path.exists():
            self._write_atomic(path, blob.data)
        return digest

    def get_blob(self, digest: str) -> bytes:
        """The bytes of a blob, verified against ``digest`` (StoreError if missing/corrupt)."""
        if not is_digest(digest):
            raise StoreError(f"{self.root}: not a digest: {digest!r}")
        path = self.blob_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{path}: blob {digest} is missing from the store") from None
        actual = sha256_bytes(data)
        if actual != digest:
            raise StoreError(f"{path}: corrupted blob: expected {digest}, found {actual}")
        return data

    def get_json(self, digest: str) -> Any:
        return json.loads(self.get_blob(digest))

    # -- layers --------------------------------------------------------------------

    def has_layer(self, diff_id: str) -> bool:
        return self.layer_path(diff_id).is_dir() and bool(
            self._query("SELECT 1 FROM layers WHERE diff_id=?", (diff_id,))
        )

    def layer_size(self, diff_id: str) -> int:
        rows = self._query("SELECT size FROM layers WHERE diff_id=?", (diff_id,))
        if not rows:
            raise StoreError(f"{self.root}: layer {diff_id} is not in the store")
        return int(rows[0][0])

    def commit_layer(self, staged: Path, diff_id: str, size: int) -> bool:
        """Move a finished layer dir into layers/ under its diff_id. Atomic (one rename)
        and idempotent: if the layer exists already, ``staged`` is deleted instead.
        Returns True when this call added it."""
        target = self.layer_path(diff_id)
        added = False
        if not target.is_dir():
            try:
                os.rename(staged, target)
                added = True
            except OSError:
                if not target.is_dir():
                    raise
        if not added:
            _rmtree(staged)
        self._write(
            "INSERT OR IGNORE INTO layers(diff_id, size, created) VALUES (?,?,?)",
            (diff_id, size, time.time()),
        )
        return added

    def all_layers(self) -> list[LayerRecord]:
        rows = self._query("SELECT diff_id, size FROM layers ORDER BY diff_id")
        return [LayerRecord(d, int(s)) for d, s in rows]

    # -- cache keys ----------------------------------------------------------------

    def lookup(self, key: str) -> str | None:
        """The diff_id built for ``key``, if recorded and its layer dir is present."""
        rows = self._query("SELECT diff_id FROM cache WHERE key=?", (key,))
        if rows and self.has_layer(rows[0][0]):
            return str(rows[0][0])
        return None

    def record(self, key: str, diff_id: str, created_by: str, seconds: float) -> None:
        """Map a cache key to a committed layer (idempotent)."""
        if not self.layer_path(diff_id).is_dir():
            raise StoreError(f"{self.root}: cannot record {key}: layer {diff_id} is missing")
        self._write(
            "INSERT OR REPLACE INTO cache(key, diff_id, created_by, seconds, created)"
            " VALUES (?,?,?,?,?)",
            (key, diff_id, created_by, seconds, time.time()),
        )

    # -- names (tags and app ids) ----------------------------------------------------

    def tag(self, name: str, manifest_digest: str) -> None:
        """Point ``name`` at a stored manifest (which must exist)."""
        self.get_blob(manifest_digest)
        self._write(
            "INSERT OR REPLACE INTO images(name, manifest, updated) VALUES (?,?,?)",
            (name, manifest_digest, time.time()),
        )

    def resolve(self, name: str) -> str | None:
        """The manifest digest a name points at. ``name@sha256:...`` is first looked up
        as a name (a pulled image is stored under the reference it was pulled by, and
        may have been re-keyed), then as a manifest digest in the store."""
        rows = self._query("SELECT manifest FROM images WHERE name=?", (name,))
        if rows:
            return str(rows[0][0])
        if "@" in name:  # a digest the store holds itself (e.g. our own build's)
            digest = name.split("@", 1)[1]
            return digest if is_digest(digest) and self.blob_path(digest).exists() else None
        if not rows and ":" not in name.rsplit("/", 1)[-1]:
            rows = self._query("SELECT manifest FROM images WHERE name=?", (name + ":latest",))
        return str(rows[0][0]) if rows else None

    def names(self) -> list[tuple[str, str, float]]:
        return [
            (str(n), str(m), float(u))
            for n, m, u in self._query("SELECT name, manifest, updated FROM images ORDER BY name")
        ]

    def manifest_layers(self, manifest_digest: str) -> list[tuple[str, int]]:
        """(diff_id, size) of each layer of a stored image, bottom first."""
        manifest = self.get_json(manifest_digest)
        config = self.get_json(manifest["config"]["digest"])
        diff_ids = config["rootfs"]["diff_ids"]
        sizes = [int(d["size"]) for d in manifest["layers"]]
        return list(zip(diff_ids, sizes, strict=True))

    # -- build records ---------------------------------------------------------------

    def begin_build(self, command: str) -> int:
        return self._write(
            "INSERT INTO builds(started, status, command) VALUES (?,?,?)",
            (time.time(), "running", command),
        )

    def end_build(self, build_id: int, status: str, summary: dict[str, Any]) -> None:
        self._write(
            "UPDATE builds SET finished=?, status=?, summary=? WHERE id=?",
            (time.time(), status, json.dumps(summary, sort_keys=True), build_id),
        )

    def record_node(
        self,
        build_id: int,
        key: str,
        label: str,
        apps: str,
        outcome: str,
        seconds: float,
        diff_id: str | None,
    ) -> None:
        self._write(
            "INSERT INTO build_nodes(build, key, label, apps, outcome, seconds, diff_id)"
            " VALUES (?,?,?,?,?,?,?)",
            (build_id, key, label, apps, outcome, seconds, diff_id),
        )

    def builds(self, limit: int = 50) -> list[BuildRecord]:
        """The ``limit`` most recent build records, oldest first."""
        rows = self._query(
            "SELECT id, started, finished, status, command, summary FROM builds"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            BuildRecord(int(i), float(s), f, str(st), str(c), json.loads(m) if m else {})
            for i, s, f, st, c, m in reversed(rows)
        ]

    def build_nodes(self, build_ids: Iterable[int]) -> list[BuildNodeRecord]:
        """The per-node rows of the given builds, in the order they were written."""
        ids = sorted(set(build_ids))
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._query(
            "SELECT build, key, label, apps, outcome, seconds, diff_id FROM build_nodes"
            f" WHERE build IN ({marks}) ORDER BY rowid",
            tuple(ids),
        )
        return [
            BuildNodeRecord(int(b), str(k), str(la), tuple(a.split(",")) if a else (), o, s, d)
            for b, k, la, a, o, s, d in rows
        ]

    # -- key inputs (what ``pipeline why`` compares) -----------------------------------

    def put_node_inputs(self, rows: Iterable[tuple[str, str]]) -> None:
        """Keep the JSON key material of nodes, keyed by cache key; one transaction.
        Idempotent: a key's material never changes, so a key already kept is left."""
        batch = list(rows)
        if not batch:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO node_inputs(key, material) VALUES (?,?)", batch
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def node_inputs(self, keys: Iterable[str]) -> dict[str, str]:
        """key -> JSON material for the given keys that are kept (others are absent)."""
        out: dict[str, str] = {}
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._query(
                f"SELECT key, material FROM node_inputs WHERE key IN ({marks})", tuple(part)
            )
            out.update((str(k), str(m)) for k, m in rows)
        return out

    def all_node_inputs(self) -> dict[str, str]:
        """Every kept key -> JSON material (for looking up a node's closest relative)."""
        return {str(k): str(m) for k, m in self._query("SELECT key, material FROM node_inputs")}

    # -- accounting and pruning ------------------------------------------------------

    def reachable(self) -> tuple[set[str], set[str]]:
        """(layer diff_ids, blob digests) reachable from every named image."""
        layers: set[str] = set()
        blobs: set[str] = set()
        for _, manifest_digest, _ in self.names():
            try:
                manifest = self.get_json(manifest_digest)
                blobs.add(manifest_digest)
                blobs.add(manifest["config"]["digest"])
                layers.update(d for d, _ in self.manifest_layers(manifest_digest))
            except StoreError:
                continue
        return layers, blobs

    def prune(self) -> tuple[int, int, int]:
        """Remove layers and blobs no name reaches, their cache rows, debris and unused
        key locks. Waits for running builds to finish first (they hold the gc lock shared)
        and keeps them out meanwhile. Returns (layers removed, blobs removed, bytes freed)."""
        with self.gc_lock(exclusive=True):
            self.clean_debris()
            keep_layers, keep_blobs = self.reachable()
            removed_layers = removed_blobs = freed = 0
            for rec in self.all_layers():
                if rec.diff_id in keep_layers:
                    continue
                _rmtree(self.layer_path(rec.diff_id))
                self._write("DELETE FROM layers WHERE diff_id=?", (rec.diff_id,))
                self._write("DELETE FROM cache WHERE diff_id=?", (rec.diff_id,))
                removed_layers += 1
                freed += rec.size
            for path in self.layers_dir.iterdir():  # dirs never recorded (killed commit)
                digest = "sha256:" + path.name
                if digest not in keep_layers and not self._query(
                    "SELECT 1 FROM layers WHERE diff_id=?", (digest,)
                ):
                    _rmtree(path)
            for path in (self.root / "blobs" / "sha256").iterdir():
                digest = "sha256:" + path.name
                if digest not in keep_blobs:
                    freed += path.stat().st_size
                    path.unlink()
                    removed_blobs += 1
            for path in (self.root / "locks").iterdir():
                path.unlink(missing_ok=True)
            return removed_layers, removed_blobs, freed
