"""The pure parts of the CI commands: key-input diffs, chains from build records,
layer directory diffs, the bench's file changes and figures, the report's DAG source."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.build import bench, why
from pipeline.build.keyinputs import MATERIAL_VERSION, decode, encode
from pipeline.build.verify import FileDiff, diff_layer_dirs
from pipeline.fs.contexthash import ContextHasher, FileDigest, digest_of
from pipeline.htmlreport.dag import dot_source
from pipeline.htmlreport.data import AppBytes, DagNode, ReportData


def run_material(**over: Any) -> dict[str, Any]:
    base = {
        "v": MATERIAL_VERSION,
        "kind": "run",
        "depth": 1,
        "parent": "sha256:p",
        "label": "RUN x",
        "command": "x",
        "network": "default",
        "mounts": [],
        "env": {"A": "1", "PATH": "/bin"},
        "workdir": "/",
        "user": "",
    }
    base.update(over)
    return base


def test_diff_materials_names_each_input() -> None:
    old = run_material()
    changes, files = why.diff_materials(old, run_material(env={"A": "2", "B": "x", "PATH": "/bin"}))
    assert changes == (why.Change("env", "1", "2", "A"), why.Change("env", None, "x", "B"))
    assert files is None
    changes, _ = why.diff_materials(old, run_material(command="y", user="1000", workdir="/w"))
    assert [c.what for c in changes] == ["command", "workdir", "user"]
    changes, _ = why.diff_materials(old, run_material(parent="sha256:q"))
    assert changes == (why.Change("parent", "sha256:p", "sha256:q"),)
    copy = {"v": 1, "kind": "copy", "label": "COPY . /"}
    changes, _ = why.diff_materials(old, copy)
    assert changes == (why.Change("step", "RUN x", "COPY . /"),)


def test_diff_files_says_which_attribute() -> None:
    old = [["a", "file", 0o644, "sha256:1"], ["b", "file", 0o644, "sha256:2"],
           ["l", "symlink", 0o777, "x"], ["gone", "dir", 0o755, ""]]  # fmt: skip
    new = [["a", "file", 0o755, "sha256:1"], ["b", "file", 0o644, "sha256:9"],
           ["l", "symlink", 0o777, "y"], ["new", "file", 0o644, "sha256:3"]]  # fmt: skip
    assert why.diff_files(old, new) == why.FileChanges(
        ("new",), ("gone",), (("a", "mode"), ("b", "content"), ("l", "target"))
    )


def test_render_lists_first_20_files() -> None:
    files = why.FileChanges(added=tuple(f"f{i:02d}" for i in range(25)))
    node = why.NodeWhy(3, "sha256:" + "a" * 64, "COPY . /app", False, "sha256:" + "b" * 64,
                       "build #4", (), files)  # fmt: skip
    text = why.render(why.AppWhy("app.x", 4, 4, (node,)))
    assert "app.x: 1 of 4 layers differ from build #4" in text
    assert "files added (25): f00, f01," in text and "f19, ... (+5)" in text
    assert "f20" not in text


def test_chain_of_follows_parents_from_the_top() -> None:
    m = {
        "k1": {"parent": "base", "depth": 1},
        "k2": {"parent": "k1", "depth": 2},
        "s1": {"parent": "base", "depth": 1},  # a stage read by COPY --from
        "k3": {"parent": "k2", "depth": 3, "from": "s1"},
        "base": {"parent": None, "depth": 0},
    }
    rows = [(k, ("app.x",)) for k in ("k1", "k2", "s1", "k3")] + [("k9", ("app.y",))]
    assert why.chain_of("app.x", rows, m) == ("base", "k1", "k2", "k3")
    assert why.chain_of("app.z", rows, m) is None
    assert why.chain_of("app.x", rows, {k: v for k, v in m.items() if k != "k2"}) is None


def test_explain_compares_with_the_previous_chain() -> None:
    a, b = run_material(label="RUN a"), run_material(label="RUN b", command="b")
    prev = why.RecordedChain(7, ("base", "old"), {"old": a})
    result = why.explain(
        "app.x",
        [("base", {"kind": "base", "label": "FROM x"}), ("new", b)],
        lambda k: k == "base",
        prev,
        lambda parent, kind: [],
    )
    (node,) = result.nodes
    assert (node.position, node.against, node.against_how) == (1, "old", "build #7")
    assert node.changes == (why.Change("command", "x", "b"),)
    # no earlier build: the closest stored sibling is the comparison
    sib = why.explain(
        "app.x",
        [("base", {"kind": "base"}), ("new", b)],
        lambda k: k == "base",
        None,
        lambda parent, kind: [("s1", run_material(command="zz", user="u")), ("s2", a)],
    )
    assert sib.nodes[0].against == "s2" and sib.nodes[0].against_how == "stored sibling"


def test_materials_round_trip_and_versions() -> None:
    m = run_material()
    assert decode(encode(m)) == m
    assert decode(encode({**m, "v": MATERIAL_VERSION + 1})) is None
    assert decode("not json") is None


def test_manifest_digest_is_the_context_digest(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    os.symlink("f", tmp_path / "d" / "l")
    hasher = ContextHasher(None)
    rows = hasher.manifest(tmp_path, (".",), ())
    assert [r.rel for r in rows] == ["d", "d/f", "d/l"]
    assert rows[2] == FileDigest("d/l", "symlink", 0o777, "f")
    assert digest_of(rows) == ContextHasher(None).digest(tmp_path, (".",), ())


def test_diff_layer_dirs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "etc").mkdir(parents=True)
        (root / "etc" / "same").write_text("same")
    (a / "etc" / "t").write_text("12:00:01")
    (b / "etc" / "t").write_text("12:00:02")
    (a / "only-a").write_text("")
    (b / "etc" / "same").chmod(0o600)
    os.utime(b / "etc" / "t", (2_000_000_000, 2_000_000_000))  # above the epoch: clamped
    assert diff_layer_dirs(a, b, epoch=0) == (
        FileDiff("etc/same", ("mode",)),
        FileDiff("etc/t", ("content",)),
        FileDiff("only-a", ("only in the stored layer",)),
    )


def test_bench_changes_and_figures(tmp_path: Path) -> None:
    py = tmp_path / "app.py"
    py.write_text("print(1)")
    bench.append_comment(py, 3)
    assert py.read_text() == "print(1)\n# pipeline bench: change 3\n"
    js = tmp_path / "x.js"
    js.write_text("f()\n")
    bench.append_comment(js, 1)
    assert js.read_text().endswith("// pipeline bench: change 1\n")
    assert bench.comment_for(tmp_path / "data.bin") is None
    docker = tmp_path / "Dockerfile"
    docker.write_text('FROM x\nRUN pip install a\ncommand = "make all"\n')
    bench.append_shell_comment(docker, 2, 1)
    bench.append_shell_comment(docker, 3, 1)
    assert docker.read_text().splitlines()[1:] == [
        "RUN pip install a # pipeline bench: change 1",
        'command = "make all # pipeline bench: change 1"',
    ]
    report = {
        "totals": {"built": 1, "cached": 4, "hit_ratio": 0.8, "bytes_written": 10,
                   "unique_bytes": 100, "naive_bytes": 300, "saved_bytes": 200},
        "nodes": [{"outcome": "built", "apps": ["app.b", "app.a"]},
                  {"outcome": "cached", "apps": ["app.c"]}],
    }  # fmt: skip
    f = bench.figures(report, 1.23456)
    assert f["seconds"] == 1.235 and f["apps_rebuilt"] == ["app.a", "app.b"]
    assert (f["layers_rebuilt"], f["saved_bytes"]) == (1, 200)
    argv = bench.build_all_argv(Path("/s"), Path("/specs"), Path("/r.json"), 2, python="py")
    assert argv == ["py", "-m", "pipeline", "--init", "--store", "/s", "build-all",
                    "--specs", "/specs", "--progress", "quiet", "--json-report", "/r.json",
                    "-j", "2"]  # fmt: skip


def test_dag_source_marks_shared_nodes() -> None:
    nodes = (
        DagNode("sha256:" + "1" * 64, "base", "FROM busybox", ("app.a", "app.b"), 100),
        DagNode("sha256:" + "2" * 64, "run", 'RUN echo "hi"', ("app.a", "app.b"), 10),
        DagNode("sha256:" + "3" * 64, "copy", "COPY . /app", ("app.a",), None),
    )
    edges = ((nodes[0].key, nodes[1].key), (nodes[1].key, nodes[2].key))
    data = ReportData("t", nodes, edges, (("app.a", nodes[2].key),),
                      (AppBytes("app.a", 110, 0, 1),), (), (), "s")  # fmt: skip
    text = dot_source(data)
    assert text.count('class="shared"') == 2 and text.count('class="own"') == 1
    assert "shared by 2 apps" in text and "not built" in text
    assert '\\"hi\\"' in text  # labels are quoted for dot
    assert "n111111111111 -> n222222222222;" in text
    assert "n333333333333 -> o0;" in text


def test_long_values_are_cut_to_where_they_differ() -> None:
    old, new = "a" * 100 + "X" + "b" * 100, "a" * 100 + "Y" + "b" * 100
    assert why._pair(old, new) == (
        '"…' + "a" * 24 + "X" + "b" * 24 + '…"',
        '"…' + "a" * 24 + "Y" + "b" * 24 + '…"',
    )
    assert why._pair("short", None) == ('"short"', "unset")
