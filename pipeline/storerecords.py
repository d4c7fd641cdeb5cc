"""The store's build records: each build's status and totals, each node's outcome in
it, and the inputs of each node's key (what ``pipeline why`` compares). A part of
:class:`pipeline.store.Store`, kept in its own module; same contracts (every write one
SQLite transaction, after what it points to exists)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import storedb


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
class Pruned:
    """What ``Store.prune`` removed (or would remove, on a dry run)."""

    names: tuple[str, ...]  # names dropped
    layers: tuple[tuple[str, int, str], ...]  # (diff_id, tar size, what made it)
    blobs: int  # JSON blobs (configs, manifests)
    freed: int  # bytes: the layers' tar sizes plus the blobs' files


class BuildRecords:
    """Build records over the store's index; mixed into :class:`pipeline.store.Store`,
    which provides the index access below."""

    root: Path
    _builds: dict[int, tuple[int, Path]]

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _write(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        raise NotImplementedError

    def _write_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def _writable(self) -> None:
        raise NotImplementedError

    # -- build records ---------------------------------------------------------------

    def begin_build(self, command: str) -> int:
        """Record a ``running`` build, owned by this process through a lock file held
        until :meth:`end_build` (or the process's end)."""
        self._writable()
        token = uuid.uuid4().hex
        lock_path = self.root / "tmp" / f"build-{token}.lock"
        fd = storedb.hold(lock_path)
        try:
            build_id = self._write(
                "INSERT INTO builds(started, status, command, owner) VALUES (?,?,?,?)",
                (time.time(), "running", command, token),
            )
        except BaseException:
            storedb.release(fd, lock_path)
            raise
        self._builds[build_id] = (fd, lock_path)
        return build_id

    def end_build(self, build_id: int, status: str, summary: dict[str, Any]) -> None:
        try:
            self._write(
                "UPDATE builds SET finished=?, status=?, summary=? WHERE id=?",
                (time.time(), status, json.dumps(summary, sort_keys=True), build_id),
            )
        finally:
            if build_id in self._builds:
                storedb.release(*self._builds.pop(build_id))

    def settle_builds(self) -> int:
        """Mark ``running`` builds whose process is gone (killed, crashed, or from a
        version that kept no lock) as ``killed``. Safe while others build."""
        settled = 0
        for build_id, owner in self._query("SELECT id, owner FROM builds WHERE status='running'"):
            if owner and storedb.owner_alive(self.root / "tmp" / f"build-{owner}.lock"):
                continue
            summary = {"error": "the build's process ended without recording an outcome"}
            self._write(
                "UPDATE builds SET finished=?, status='killed', summary=? "
                "WHERE id=? AND status='running'",
                (time.time(), json.dumps(summary), build_id),
            )
            settled += 1
        return settled

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
        self._write_many("INSERT OR IGNORE INTO node_inputs(key, material) VALUES (?,?)", batch)

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
