"""The generator is deterministic, its HCL and Dockerfiles describe the same steps,
and its RUN commands write exactly the promised number of incompressible bytes."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from benchmarks.workload import (
    Fleet,
    Shape,
    change_source,
    dep_command,
    fill_command,
    generate,
    hcl_string,
    main,
    run_steps,
)


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_shape_same_bytes(tmp_path: Path) -> None:
    shape = Shape(apps=5, dep_sets=2, dep_mb=1, system_mb=0.5, files=3)
    generate(tmp_path / "a", shape)
    generate(tmp_path / "b", shape)
    assert digest_tree(tmp_path / "a") == digest_tree(tmp_path / "b")
    other = digest_tree(generate(tmp_path / "c", Shape(apps=5, seed=2)).root)
    assert other["specs/fleet.hcl"] != digest_tree(tmp_path / "a")["specs/fleet.hcl"]


def test_specs_and_dockerfiles_carry_the_same_commands(tmp_path: Path) -> None:
    shape = Shape(apps=4, dep_sets=3, dep_mb=0.1, system_mb=0.1, files=2)
    fleet = generate(tmp_path, shape)
    hcl = (fleet.specs / "fleet.hcl").read_text()
    for _, command in run_steps(shape):
        assert hcl_string(command) in hcl
    for i, app in enumerate(fleet.apps):
        lines = fleet.dockerfile(app).read_text().splitlines()
        runs = [line.removeprefix("RUN ") for line in lines if line.startswith("RUN ")]
        assert runs == [run_steps(shape)[0][1], dep_command(shape, i % 3)]
        assert f"image.deps_{i % 3}" in (fleet.specs / "services-00.hcl").read_text()
    assert Fleet.load(tmp_path).apps == fleet.apps


def test_hcl_string_escapes_templates() -> None:
    assert hcl_string('a "${x}" %{y} \\') == '"a \\"$${x}\\" %%{y} \\\\"'


def test_change_source_edits_one_file_and_restores(tmp_path: Path) -> None:
    fleet = generate(tmp_path, Shape(apps=3, files=2, dep_mb=0, system_mb=0))
    before = digest_tree(fleet.specs)
    path = change_source(fleet, revision=1)
    after = digest_tree(fleet.specs)
    assert [k for k in before if before[k] != after[k]] == [str(path.relative_to(fleet.specs))]
    change_source(fleet, revision=0)
    assert digest_tree(fleet.specs) == before


def test_plan_fleet_cli(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--plan-fleet"]) == 0
    fleet = Fleet.load(tmp_path)
    assert len(fleet.apps) == 1000 and fleet.shape.dep_sets == 10
    assert len(list(fleet.specs.glob("services-*.hcl"))) == 10
    assert not (tmp_path / "docker").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_fill_command_writes_exact_incompressible_bytes(tmp_path: Path) -> None:
    from pipeline.build.bases import make_busybox_rootfs

    root = tmp_path / "root"
    make_busybox_rootfs(root)
    size = (1 << 20) + 12345
    command = fill_command("/opt/x", size, 256 << 10, seed=7)
    digests = []
    for _ in range(2):
        subprocess.run(["chroot", str(root), "/bin/sh", "-c", command], check=True)
        files = sorted((root / "opt/x").iterdir())
        assert [f.name for f in files] == [f"part-{i}.bin" for i in range(5)]  # no temp files
        data = b"".join(f.read_bytes() for f in files)
        assert len(data) == size
        assert len(gzip.compress(data, 6)) > 0.99 * size
        digests.append(hashlib.sha256(data).hexdigest())
        subprocess.run(["rm", "-rf", str(root / "opt")], check=True)
    assert digests[0] == digests[1]
