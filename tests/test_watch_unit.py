"""``pipeline.build.watch`` without a build: what is watched for a graph, which changes
reload the specs, and the watcher on real inotify (a directory of files we write)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pipeline.build.watch import Inputs, Watcher, inputs_of
from pipeline.graph import compile_fleet
from pipeline.spec.loader import load_fleet

SPEC = """
app "web" {
  from   = "busybox:latest"
  source = "src"
}

app "other" {
  from   = "busybox:latest"
  source = "other"
}
"""


def test_inputs_are_the_spec_dir_and_the_targets_contexts(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "fleet.hcl").write_text(SPEC)
    fleet = load_fleet(tmp_path, {}, {})
    graph = compile_fleet(fleet, {}, lambda copy: "sha256:" + "0" * 64, ["app.web"])
    inputs = inputs_of(fleet, graph, tmp_path)
    assert inputs == Inputs((tmp_path,), (tmp_path / "src",))
    assert inputs.is_spec_change(tmp_path / "fleet.hcl")
    assert inputs.is_spec_change(tmp_path / "pipeline.lock")
    assert inputs.is_spec_change(tmp_path / "src" / ".dockerignore")  # the loader reads it
    assert not inputs.is_spec_change(tmp_path / "src" / "app.py")
    assert not inputs.is_spec_change(tmp_path / "src" / "deep" / "x.txt")


def test_watcher_reports_a_write_in_a_tree_and_ignores_other_dirs(tmp_path: Path) -> None:
    tree, flat, other = tmp_path / "tree", tmp_path / "flat", tmp_path / "other"
    for d in (tree / "sub", flat / "deeper", other):
        d.mkdir(parents=True)
    with Watcher() as watcher:
        watcher.watch(Inputs((flat,), (tree,)))
        (other / "x").write_text("not watched\n")
        (flat / "deeper" / "y").write_text("below a flat dir: not watched\n")
        (tree / "sub" / "z").write_text("watched\n")
        got: list[set[Path]] = []
        t = threading.Thread(target=lambda: got.append(watcher.changes(poll=0.1)), daemon=True)
        t.start()
        t.join(10)
        assert got, "no change reported"
        assert tree / "sub" / "z" in got[0]
        assert not any(other in p.parents or flat / "deeper" in p.parents for p in got[0])
        # a spec edit directly in the flat dir is seen too
        time.sleep(0.05)
        (flat / "fleet.hcl").write_text("x\n")
        assert flat / "fleet.hcl" in watcher.changes(poll=0.1)
