"""Unit tests of the failure-path pieces: limits from the environment, message
escaping, OCI document classification, the index (damage, locks, journal, rebuild),
read-only stores, build records, the epoch in the cache key."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import storedb
from pipeline.errors import BuildFailed, StepFailure, StoreError, UsageError, escape
from pipeline.graph import compile_fleet
from pipeline.limits import Limits, current, over
from pipeline.oci.media import MT_DOCKER_LIST, MT_INDEX, MT_MANIFEST, document_kind
from pipeline.store import Store

# ---------------------------------------------------------------------------------------
# limits


def test_limits_defaults_and_environment() -> None:
    assert Limits.from_environ({}) == Limits()
    got = Limits.from_environ(
        {"PIPELINE_LIMIT_RATIO": "1000", "PIPELINE_LIMIT_UNPACKED_BYTES": "2T", "OTHER": "x"}
    )
    assert got.ratio == 1000 and got.unpacked_bytes == 2 << 40
    assert Limits.from_environ({"PIPELINE_LIMIT_SPEC_BYTES": " 4k "}).spec_bytes == 4096


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "lots", "1e9", "9" * 30, "12Q"])
def test_a_bad_limit_names_its_variable(value: str) -> None:
    with pytest.raises(UsageError, match=r"^PIPELINE_LIMIT_PATH_DEPTH='.*': expected a positive"):
        Limits.from_environ({"PIPELINE_LIMIT_PATH_DEPTH": value})


def test_current_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_LIMIT_ARCHIVE_ENTRIES", "7")
    assert current().archive_entries == 7
    monkeypatch.delenv("PIPELINE_LIMIT_ARCHIVE_ENTRIES")
    assert current().archive_entries == Limits().archive_entries


def test_over_names_the_variable() -> None:
    assert over("spec_bytes", 1 << 20) == "the limit is 1 MiB; PIPELINE_LIMIT_SPEC_BYTES raises it"
    assert over("ratio", 250, "times") == "the limit is 250 times; PIPELINE_LIMIT_RATIO raises it"


def test_every_limit_is_documented() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "limits.md").read_text()
    for name in Limits.__dataclass_fields__:
        assert Limits.variable(name) in doc, name


# ---------------------------------------------------------------------------------------
# escaping


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain é 日本", "plain é 日本"),
        ("esc\x1b[31mred", "esc\\x1b[31mred"),
        ("nul\0", "nul\\x00"),
        ("bidi\u202egnp.exe", "bidi\\u202egnp.exe"),
        ("isolate\u2066x\u2069", "isolate\\u2066x\\u2069"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("c1\x9b", "c1\\x9b"),
        ("new\nline", "new\\x0aline"),
        ("bytes\udcff", "bytes\\xff"),
    ],
)
def test_escape(text: str, shown: str) -> None:
    assert escape(text) == shown


def test_build_failures_keep_their_lines_but_escape_step_output() -> None:
    failure = StepFailure(("app.a",), "RUN x", None, 1, ("\x1b[2Jcleared", "ok"))
    text = escape(str(BuildFailed([failure])), keep_newlines=True)
    assert text.splitlines() == [
        "step 'RUN x' failed (exit code 1); apps: app.a",
        "    | \\x1b[2Jcleared",
        "    | ok",
    ]


# ---------------------------------------------------------------------------------------
# OCI documents


@pytest.mark.parametrize(
    ("doc", "declared", "kind"),
    [
        ({"layers": [], "config": {}}, (), "manifest"),
        ({"manifests": []}, (), "index"),
        ({"manifests": [], "mediaType": MT_INDEX}, (MT_INDEX,), "index"),
        ({"layers": []}, (MT_MANIFEST, ""), "manifest"),
        ({"mediaType": MT_DOCKER_LIST}, (), "index"),
    ],
)
def test_document_kind(doc: dict[str, object], declared: tuple[str, ...], kind: str) -> None:
    assert document_kind(doc, *declared) == kind


@pytest.mark.parametrize(
    ("doc", "declared", "reason"),
    [
        ({"layers": [], "manifests": []}, (), "both 'manifests' and 'layers'"),
        ({"config": {}, "manifests": []}, (MT_INDEX,), "both"),
        ({"layers": []}, (MT_INDEX,), "declared as .*index.* but shaped like an image manifest"),
        ({"manifests": []}, (MT_MANIFEST,), "shaped like an image index"),
        ({"layers": [], "mediaType": MT_INDEX}, (MT_MANIFEST,), "declared as .* and "),
        ({"schemaVersion": 2}, (), "neither an image manifest nor an index"),
        ([], (), "not a JSON object"),
    ],
)
def test_ambiguous_documents_are_refused(
    doc: object, declared: tuple[str, ...], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        document_kind(doc, *declared)


# ---------------------------------------------------------------------------------------
# the index


def test_a_damaged_index_is_one_line_pointing_to_fsck(tmp_path: Path) -> None:
    Store(tmp_path / "s").close()
    (tmp_path / "s" / "index.db").write_bytes(b"garbage" * 1000)
    with pytest.raises(
        StoreError, match=r"index\.db: the store's index is damaged .*pipeline fsck"
    ):
        Store(tmp_path / "s")


def test_a_store_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match=r"f: not a directory"):
        Store(tmp_path / "f")


def test_journal_records_what_the_index_records(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    layer = tmp_path / "s" / "tmp" / "l"
    layer.mkdir()
    diff_id = "sha256:" + "a" * 64
    store.commit_layer(layer, diff_id, 10, 1234)
    store.record("sha256:" + "b" * 64, diff_id, "RUN x", 1.5)
    store.close()
    state = storedb.Journal(tmp_path / "s" / "index.journal").read()
    assert state.layers == {diff_id: (10, 1234)}
    assert state.keys == {"sha256:" + "b" * 64: (diff_id, "RUN x", 1.5)}
    with open(tmp_path / "s" / "index.journal", "a") as f:
        f.write('{"t": "layer", "diff_id": "torn')  # a crash mid-line
    assert storedb.Journal(tmp_path / "s" / "index.journal").read().layers == state.layers


def test_epoch_is_recorded_once_and_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    diff_id = "sha256:" + "c" * 64
    for epoch in (None, 5, 9):
        staged = tmp_path / "s" / "tmp" / f"l{epoch}"
        staged.mkdir()
        store.commit_layer(staged, diff_id, 1, epoch)
    assert store.layer_epoch(diff_id) == 5  # the first recorded one stays
    assert store.layer_epoch("sha256:" + "d" * 64, 7) == 7


def test_a_truncated_index_is_found_and_the_journal_still_has_everything(tmp_path: Path) -> None:
    """SQLite grows a table at the end of the file, so truncation loses exactly the
    newest rows' pages and salvage gets little or nothing; the journal has them all."""
    store = Store(tmp_path / "s")
    for i in range(200):
        staged = tmp_path / "s" / "tmp" / f"l{i}"
        staged.mkdir()
        store.commit_layer(staged, f"sha256:{i:064x}", i, 0)
    store.close()
    index = tmp_path / "s" / "index.db"
    os.truncate(index, index.stat().st_size // 2)
    found = storedb.problems(index)
    assert found and found[0].startswith("truncated: "), found
    rows = storedb.salvage(index, ("layers", "images"))  # never raises
    assert len(rows["layers"]) < 200 and rows["images"] == []
    state = storedb.Journal(tmp_path / "s" / "index.journal").read()
    assert len(state.layers) == 200


def test_rebuild_index_replaces_it_atomically(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    state = storedb.JournalState()
    state.layers["sha256:" + "e" * 64] = (3, 42)
    store.rebuild_index(state, {"builds": [(1, 1.0, 2.0, "ok", "build-all", "{}", None)]})
    assert store.index_state().layers == state.layers
    assert store.layer_epoch("sha256:" + "e" * 64) == 42
    store.close()
    db = sqlite3.connect(tmp_path / "s" / "index.db")
    assert db.execute("SELECT status FROM builds").fetchall() == [("ok",)]


def test_locked_index_probe(tmp_path: Path) -> None:
    Store(tmp_path / "s").close()
    index = tmp_path / "s" / "index.db"
    assert not storedb.is_locked(index, 0.1)
    holder = sqlite3.connect(index, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE layers SET size=size")
    try:
        assert storedb.is_locked(index, 0.1)
    finally:
        holder.close()


# ---------------------------------------------------------------------------------------
# build records


def test_a_build_whose_process_died_is_marked_killed(tmp_path: Path) -> None:
    root = tmp_path / "s"
    Store(root).close()
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})\n"
        "from pipeline.store import Store\n"
        f"s = Store({str(root)!r})\n"
        "s.begin_build('build-all')\n"
        "os._exit(9)  # no end_build: a crash\n"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 9
    store = Store(root)  # opening settles it
    db = sqlite3.connect(root / "index.db")
    assert db.execute("SELECT status, command FROM builds").fetchall() == [("killed", "build-all")]
    own = store.begin_build("mine")
    assert store.settle_builds() == 0  # ours is alive: left alone
    store.end_build(own, "ok", {})
    assert [p.name for p in (root / "tmp").iterdir()] == []


# ---------------------------------------------------------------------------------------
# the epoch is part of the key


def test_the_epoch_changes_every_run_and_copy_key(tmp_path: Path) -> None:
    from pipeline.spec.loader import load_fleet

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.hcl").write_text(
        'image "i" {\n  from = "scratch"\n  run { command = "true" }\n  tags = ["i:1"]\n}\n'
    )
    fleet = load_fleet(specs, {}, {})
    keys = [
        set(compile_fleet(fleet, {}, lambda c: "sha256:" + "0" * 64, None, epoch).nodes)
        for epoch in (0, 0, 1700000000)
    ]
    assert keys[0] == keys[1] and not keys[0] & keys[2]
