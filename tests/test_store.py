"""The store's contracts: atomic, idempotent, verified, safe to kill, safe to share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pipeline.errors import StoreError
from pipeline.oci.manifest import Descriptor, image_config_blob, json_blob, manifest_blob
from pipeline.oci.media import MT_CONFIG, MT_LAYER
from pipeline.store import Store


def layer_dir(tmp: Path, name: str, content: bytes) -> Path:
    d = tmp / name
    d.mkdir()
    (d / "file").write_bytes(content)
    return d


def fake_diff_id(content: bytes) -> str:
    from pipeline.digest import sha256_bytes

    return sha256_bytes(content)


def test_blob_round_trip_and_idempotent_put(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    blob = json_blob({"a": 1}, MT_CONFIG)
    assert store.put_blob(blob) == blob.descriptor.digest
    assert store.put_blob(blob) == blob.descriptor.digest
    assert store.get_blob(blob.descriptor.digest) == blob.data
    assert list((tmp_path / "s" / "blobs" / "sha256").glob(".*tmp")) == []


def test_corrupted_blob_is_detected_on_read(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    blob = json_blob({"a": 1}, MT_CONFIG)
    store.put_blob(blob)
    path = store.blob_path(blob.descriptor.digest)
    path.write_bytes(b'{"a":2}')
    with pytest.raises(StoreError, match="corrupted blob: expected sha256:"):
        store.get_blob(blob.descriptor.digest)


def test_missing_blob_and_bad_digest_are_store_errors(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    with pytest.raises(StoreError, match="missing"):
        store.get_blob("sha256:" + "0" * 64)
    with pytest.raises(StoreError, match="not a digest"):
        store.get_blob("sha256:../../etc/passwd")


def test_commit_layer_is_idempotent_and_record_needs_the_layer(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    diff_id = fake_diff_id(b"x")
    with store.staging() as st:
        assert store.commit_layer(layer_dir(st.path, "a", b"x"), diff_id, 10) is True
        again = layer_dir(st.path, "b", b"x")
        assert store.commit_layer(again, diff_id, 10) is False
        assert not again.exists()
    store.record("sha256:" + "1" * 64, diff_id, "RUN x", 0.1)
    assert store.lookup("sha256:" + "1" * 64) == diff_id
    with pytest.raises(StoreError, match="missing"):
        store.record("sha256:" + "2" * 64, fake_diff_id(b"nope"), "RUN y", 0.1)


def test_lookup_ignores_a_cache_row_whose_layer_dir_is_gone(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    diff_id = fake_diff_id(b"x")
    with store.staging() as st:
        store.commit_layer(layer_dir(st.path, "a", b"x"), diff_id, 10)
    store.record("sha256:" + "1" * 64, diff_id, "RUN x", 0.1)
    import shutil

    shutil.rmtree(store.layer_path(diff_id))
    assert store.lookup("sha256:" + "1" * 64) is None


def test_staging_dir_of_a_killed_process_is_removed_by_the_next_open(tmp_path: Path) -> None:
    root = tmp_path / "s"
    Store(root).close()
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from pipeline.store import Store
        s = Store(Path({str(root)!r}))
        with s.staging() as st:
            (st.path / "half-written").write_bytes(b"x" * 1000)
            print(st.path, flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    staged = Path(proc.stdout.readline().strip())
    assert staged.is_dir()
    live = Store(root)  # the owner is alive: its dir must survive
    assert staged.is_dir()
    live.close()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = Store(root)
    assert not staged.exists()
    assert [p for p in (root / "tmp").iterdir()] == []
    assert store.all_layers() == []


def test_key_lock_serialises_builders_of_one_key(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    key = "sha256:" + "3" * 64
    events: list[str] = []

    def worker(name: str) -> None:
        with store.key_lock(key):
            events.append(f"{name}-in")
            time.sleep(0.05)
            events.append(f"{name}-out")

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # each holder leaves before the other enters
    assert events[0][0] == events[1][0] and events[2][0] == events[3][0]


def test_tags_resolve_and_prune_keeps_only_what_names_reach(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    kept, dropped = fake_diff_id(b"keep"), fake_diff_id(b"drop")
    with store.staging() as st:
        store.commit_layer(layer_dir(st.path, "k", b"keep"), kept, 4)
        store.commit_layer(layer_dir(st.path, "d", b"drop"), dropped, 4)
    store.record("sha256:" + "4" * 64, dropped, "RUN drop", 0.1)
    from pipeline.oci.config import HistoryEntry, ImageConfig

    config = image_config_blob(ImageConfig(), [kept], [HistoryEntry("x", False)])
    store.put_blob(config)
    manifest = manifest_blob(config.descriptor, [Descriptor(MT_LAYER, kept, 4)])
    digest = store.put_blob(manifest)
    store.tag("demo:1", digest)
    assert store.resolve("demo:1") == digest
    assert store.resolve(f"demo@{digest}") == digest
    assert store.resolve("nope:1") is None
    pruned = store.prune()
    layers, blobs, freed = len(pruned.layers), pruned.blobs, pruned.freed
    assert (layers, blobs) == (1, 0)
    assert freed == 4
    assert store.has_layer(kept) and not store.has_layer(dropped)
    assert store.lookup("sha256:" + "4" * 64) is None


def test_prune_waits_for_a_running_build(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    other = Store(tmp_path / "s")
    finished: list[float] = []
    with store.gc_lock():
        t = threading.Thread(target=lambda: (other.prune(), finished.append(time.monotonic())))
        t.start()
        time.sleep(0.2)
        assert finished == []  # still waiting for the build to let go
        released = time.monotonic()
    t.join(10)
    assert finished and finished[0] >= released


def test_cache_mount_ids_cannot_escape_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    for hostile in ("../../etc", "..", ".", "/etc", ""):
        path = store.cache_mount_dir(hostile)
        assert path.parent == store.root / "cache", hostile
        assert os.path.realpath(path).startswith(str(store.root / "cache") + "/"), hostile
