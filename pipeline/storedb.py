"""The store's index file (SQLite) and its recovery journal: opening with damage and
lock detection, salvaging rows from a damaged file, writing a fresh one, and the
journal of what the index records. Used by :mod:`pipeline.store` only; stdlib only.

The journal (``index.journal``, JSON lines) gets one line, appended with a single
``write`` on an ``O_APPEND`` descriptor, for every layer, cache key and name the
index records or drops. The index stays the source of truth; the journal exists so
that ``pipeline fsck --repair`` can rebuild a damaged index from it and from the
files that verify. A torn last line (a crash mid-write) is ignored when read.

Contracts: :func:`connect` raises :class:`IndexDamaged` / :class:`IndexLocked`
(StoreErrors whose one line points to ``pipeline fsck``) instead of sqlite3 errors;
:func:`write_fresh` replaces the index atomically (temp file, fsync, rename, with
stale ``-wal``/``-shm`` files removed first); :func:`salvage` never writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import StoreError

INDEX = "index.db"
JOURNAL = "index.journal"
FSCK_HINT = "run `pipeline fsck` to check it (`pipeline fsck --repair` rebuilds it)"

# columns added after the first release of the schema: (table, column, declaration)
MIGRATIONS = (
    ("layers", "epoch", "INTEGER"),
    ("builds", "owner", "TEXT"),
)


class IndexDamaged(StoreError):
    """The index file cannot be read as a SQLite database."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        super().__init__(f"{path}: the store's index is damaged ({detail}); {FSCK_HINT}")


class IndexLocked(StoreError):
    """Another process holds the index locked for longer than we wait."""

    def __init__(self, path: Path, seconds: float) -> None:
        self.path = path
        super().__init__(
            f"{path}: the store's index stayed locked by another process for {seconds:g} s; "
            "wait for it, or if no pipeline command is running, "
            "`pipeline fsck --repair` rebuilds the index"
        )


def translate(exc: sqlite3.Error, path: Path, seconds: float) -> StoreError:
    """The one-line StoreError for a sqlite3 error on the index at ``path``: locked,
    not usable (permissions, I/O), or damaged (anything else)."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError):
        if "locked" in text or "busy" in text:
            return IndexLocked(path, seconds)
        if any(w in text for w in ("unable to open", "readonly", "disk I/O", "full")):
            return StoreError(f"{path}: cannot use the store's index: {text}")
    return IndexDamaged(path, text)


def connect(path: Path, seconds: float, readonly: bool, schema: str) -> sqlite3.Connection:
    """An autocommit connection to the index at ``path`` with the schema in place and
    the migrations applied (WAL, ``busy_timeout`` of ``seconds``). Read-only
    connections change nothing (``mode=ro``, else ``immutable=1`` when even the WAL's
    shared-memory file cannot be made)."""
    try:
        if readonly:
            if not path.exists():
                raise StoreError(f"{path.parent}: not a pipeline store (no {INDEX})")
            db = _connect_readonly(path, seconds)
        else:
            db = sqlite3.connect(
                path, timeout=seconds, check_same_thread=False, isolation_level=None
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={int(seconds * 1000)}")
        if not readonly:
            db.executescript(schema)
            _migrate(db)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.Error as exc:
        raise translate(exc, path, seconds) from None


def _connect_readonly(path: Path, seconds: float) -> sqlite3.Connection:
    last: sqlite3.Error | None = None
    for flags in ("mode=ro", "immutable=1"):
        try:
            db = sqlite3.connect(
                f"{path.as_uri()}?{flags}",
                uri=True,
                timeout=seconds,
                check_same_thread=False,
                isolation_level=None,
            )
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError as exc:
            last = exc
    assert last is not None
    raise last


def _migrate(db: sqlite3.Connection) -> None:
    for table, column, decl in MIGRATIONS:
        if column not in columns(db, table):
            with contextlib.suppress(sqlite3.OperationalError):  # a racing process added it
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in db.execute(f"PRAGMA table_info({table})").fetchall()]


def readonly(root: Path) -> bool:
    """True when ``root`` is an existing store this process may read but not write;
    StoreError when ``root`` exists and is not a directory."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(
            f"{root}: cannot use the store: {exc.strerror} (choose another place with "
            "--store or PIPELINE_STORE)"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(
            f"{root}: not a directory (a store is a directory; choose another with "
            "--store or PIPELINE_STORE)"
        )
    for sub in ("", "blobs", "layers"):  # private (0700) stores are their owner's only
        path = root / sub if sub else root
        if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
            raise StoreError(
                f"{path}: cannot read the store: it is private to its owner (uid "
                f"{path.stat().st_uid}); use your own with --store or PIPELINE_STORE"
            )
    index = root / INDEX
    return not os.access(root, os.W_OK | os.X_OK) or (
        index.exists() and not os.access(index, os.W_OK)
    )


def hold(path: Path) -> int:
    """Create lock file ``path`` and hold it exclusively; the fd (see :func:`release`)."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def release(fd: int, path: Path) -> None:
    path.unlink(missing_ok=True)
    os.close(fd)


def holder_pid(fd: int) -> int:
    """The pid a lock file's holder wrote into it (0 when empty or unreadable)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def owner_alive(path: Path) -> bool:
    """Whether some process holds lock file ``path`` (a missing file: nobody). A free
    lock file is removed."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return True
    release(fd, path)
    return False


# ---------------------------------------------------------------------------------------
# checking and salvaging a damaged file


def problems(path: Path) -> list[str]:
    """What is wrong with the index file at ``path`` ([] when it reads as a sound
    database): unreadable, truncated (fewer pages than its header says), or what
    ``PRAGMA integrity_check`` reports (first 5 lines)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return ["missing"]
    found: list[str] = []
    try:
        with open(path, "rb") as f:
            header = f.read(100)
        if size and not header.startswith(b"SQLite format 3\0"):
            return ["not a SQLite database"]
        if len(header) == 100:
            page = int.from_bytes(header[16:18], "big")
            page = 65536 if page == 1 else page
            pages = int.from_bytes(header[28:32], "big")
            if pages and page and size < pages * page:
                found.append(f"truncated: {size:,} bytes, its header says {pages * page:,}")
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
        try:
            rows = db.execute("PRAGMA integrity_check").fetchall()
        finally:
            db.close()
        report = [str(r[0]) for r in rows if str(r[0]) != "ok"]
        found.extend(report[:5])
    except sqlite3.Error as exc:
        found.append(str(exc))
    return found


def is_locked(path: Path, seconds: float) -> bool:
    """Whether another process keeps the index at ``path`` from being written for
    ``seconds`` (a probe: ``BEGIN IMMEDIATE`` then ``ROLLBACK``)."""
    try:
        db = sqlite3.connect(path, timeout=seconds, isolation_level=None)
    except sqlite3.Error:
        return False
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc) or "busy" in str(exc)
    except sqlite3.Error:
        return False
    finally:
        db.close()


def set_aside(path: Path) -> Path:
    """Rename a damaged index (and its ``-wal``/``-shm``) out of the way, to
    ``index.db.damaged-<n>``; the new name."""
    n = 1
    while path.with_name(f"{path.name}.damaged-{n}").exists():
        n += 1
    aside = path.with_name(f"{path.name}.damaged-{n}")
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            os.replace(extra, aside.with_name(aside.name + suffix))
    return aside


def salvage(
    path: Path, tables: Sequence[str], immutable: bool = True
) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of ``tables`` still readable in the (possibly damaged) index file at
    ``path``: each table is read in rowid order up to its first unreadable page.
    Never writes; ``immutable`` (for a damaged or locked file) also takes no locks and
    ignores the WAL, else the file is read like any reader does."""
    out: dict[str, list[tuple[Any, ...]]] = {t: [] for t in tables}
    flags = "immutable=1" if immutable else "mode=ro"
    try:
        db = sqlite3.connect(f"{path.as_uri()}?{flags}", uri=True, isolation_level=None)
    except sqlite3.Error:
        return out
    try:
        for table in tables:
            try:
                cursor = db.execute(f"SELECT * FROM {table}")
                while True:
                    row = cursor.fetchone()
                    if row is None:
                        break
                    out[table].append(tuple(row))
            except sqlite3.Error:
                continue  # keep what was read before the damage
    finally:
        db.close()
    return out


def write_fresh(path: Path, schema: str, rows: Mapping[str, Iterable[Sequence[Any]]]) -> None:
    """Replace the index at ``path`` with a new file holding ``schema`` and ``rows``
    (table -> rows, all columns in table order). Atomic: written to a temp file,
    fsynced, then renamed over ``path`` after the old ``-wal``/``-shm`` are removed
    (a stale WAL must never be replayed into the new file). The caller makes sure no
    other process writes the store meanwhile."""
    tmp = path.with_name(f".{path.name}.rebuild")
    for stale in (tmp, tmp.with_name(tmp.name + "-journal")):
        stale.unlink(missing_ok=True)
    db = sqlite3.connect(tmp, isolation_level=None)
    try:
        db.executescript(schema)
        _migrate(db)
        db.execute("BEGIN")
        for table, table_rows in rows.items():
            cols = columns(db, table)
            marks = ",".join("?" * len(cols))
            for row in table_rows:
                padded = tuple(row)[: len(cols)] + (None,) * (len(cols) - len(row))
                db.execute(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", padded)
        db.execute("COMMIT")
    finally:
        db.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------
# the journal


@dataclass
class JournalState:
    """What the journal says the index should hold (last record wins)."""

    layers: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # size, epoch
    keys: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # diff_id, by, s
    names: dict[str, str] = field(default_factory=dict)  # name -> manifest digest

    def apply(self, record: Mapping[str, Any]) -> None:
        kind = record.get("t")
        if kind == "layer":
            epoch = record.get("epoch")
            self.layers[str(record["diff_id"])] = (
                int(record["size"]),
                int(epoch) if epoch is not None else None,
            )
        elif kind == "key":
            self.keys[str(record["key"])] = (
                str(record["diff_id"]),
                str(record.get("by", "")),
                float(record.get("seconds", 0.0)),
            )
        elif kind == "name":
            self.names[str(record["name"])] = str(record["manifest"])
        elif kind == "drop-layer":
            diff_id = str(record["diff_id"])
            self.layers.pop(diff_id, None)
            for key in [k for k, v in self.keys.items() if v[0] == diff_id]:
                del self.keys[key]
        elif kind == "drop-name":
            self.names.pop(str(record["name"]), None)

    def records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for diff_id, (size, epoch) in sorted(self.layers.items()):
            out.append({"t": "layer", "diff_id": diff_id, "size": size, "epoch": epoch})
        for key, (diff_id, by, seconds) in sorted(self.keys.items()):
            out.append({"t": "key", "key": key, "diff_id": diff_id, "by": by, "seconds": seconds})
        for name, manifest in sorted(self.names.items()):
            out.append({"t": "name", "name": name, "manifest": manifest})
        return out


class Journal:
    """Appends to and reads the journal file at ``path``. Thread-safe appends (one
    ``os.write`` per record on an ``O_APPEND`` fd); failures to append are ignored
    (the journal is a safety net, the index is what counts)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        try:
            if self._fd < 0:
                self._fd = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
                )
            os.write(self._fd, line.encode())
        except OSError:
            pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self) -> JournalState:
        state = JournalState()
        try:
            with open(self.path, "rb") as f:
                for raw in f:
                    try:
                        record = json.loads(raw)
                        if isinstance(record, dict):
                            state.apply(record)
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn or foreign line
        except FileNotFoundError:
            pass
        return state

    def rewrite(self, state: JournalState) -> None:
        """Replace the journal with ``state``'s records (atomic rename)."""
        self.close()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for record in state.records():
                f.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
