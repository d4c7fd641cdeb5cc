"""Golden cache keys: the keys and image configs of two small fleets are frozen in
``tests/cases/golden/keys.json``, so a refactor that changes a key fails here.

A change that is meant to change keys (a new step encoding, a new lowering) regenerates
the file with ``PIPELINE_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and says why in
its commit message.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.digest import key_of
from pipeline.fs.contexthash import ContextHasher
from pipeline.graph import ResolvedBase, compile_fleet
from pipeline.model import Copy
from pipeline.oci.config import ImageConfig
from pipeline.spec.loader import load_fleet

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "cases" / "golden"
EXAMPLE = HERE.parent / "specs"
BASE = ResolvedBase(
    ref="fixed",
    manifest_digest="sha256:" + "ab" * 32,
    config=ImageConfig(env=(("PATH", "/usr/bin:/bin"),), cmd=("sh",)),
    diff_ids=("sha256:" + "cd" * 32,),
    history=(("base layer", False),),
)


def _graph_facts(specs: Path, tmp: Path) -> dict[str, Any]:
    fleet = load_fleet(specs, {}, None)
    refs = {d.base.ref for d in fleet.images.values() if d.base.kind in ("store", "registry")}
    hasher = ContextHasher(tmp / "stat-cache.json")

    def digest(copy: Copy) -> str:
        return hasher.digest(Path(copy.context), copy.sources, copy.ignore)

    graph = compile_fleet(fleet, {r: BASE for r in refs}, digest)
    return {
        "nodes": sorted(graph.nodes),
        "images": {
            image_id: {
                "chain": list(plan.nodes),
                "config": key_of(plan.config.to_oci()),
                "history": [[h.created_by, h.empty_layer] for h in plan.history],
            }
            for image_id, plan in sorted(graph.images.items())
        },
    }


@pytest.fixture
def golden_copy(tmp_path: Path) -> Path:
    """The golden fleet in a fresh dir (git does not keep modes beyond 644/755)."""
    out = tmp_path / "golden"
    shutil.copytree(GOLDEN, out, symlinks=True)
    for path in [out, *out.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    return out


def test_cache_keys_are_unchanged(golden_copy: Path, tmp_path: Path) -> None:
    facts = {
        "golden": _graph_facts(golden_copy, tmp_path),
        "example": _graph_facts(EXAMPLE, tmp_path),
    }
    expected_file = GOLDEN / "keys.json"
    if os.environ.get("PIPELINE_UPDATE_GOLDEN") == "1":
        expected_file.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    expected = json.loads(expected_file.read_text())
    for fleet_name in ("golden", "example"):
        got, want = facts[fleet_name], expected[fleet_name]
        assert set(got["images"]) == set(want["images"]), fleet_name
        for image_id, plan in want["images"].items():
            assert got["images"][image_id] == plan, f"{fleet_name}: {image_id} changed"
        assert got["nodes"] == want["nodes"], fleet_name
