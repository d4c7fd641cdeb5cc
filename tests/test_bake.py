"""bake files: ``--print`` of our own cases against bake's documented resolution, and
the errors bake files can make."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.spec.bakefile import find_files
from pipeline.spec.bakeproject import load_definition

CASES = Path(__file__).parent / "cases" / "bake"
NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())


def run_case(case: Path, tmp_path: Path) -> tuple[str | None, str | None]:
    work = tmp_path / case.name
    shutil.copytree(case, work)
    spec = json.loads((work / "case.json").read_text())
    env = spec.get("env", {})
    try:
        files = find_files(spec.get("files", []), work, env)
        definition = load_definition(
            files, spec.get("names", []), spec.get("set", []), env, spec.get("var", {})
        )
        return definition.print_json(), None
    except PipelineError as exc:
        return None, str(exc)


@pytest.mark.parametrize("name", NAMES)
def test_bake_case(name: str, tmp_path: Path) -> None:
    spec = json.loads((CASES / name / "case.json").read_text())
    printed, error = run_case(CASES / name, tmp_path)
    if "error" in spec:
        assert error is not None, f"expected an error, got {printed}"
        assert spec["error"] in error
        return
    assert error is None, error
    assert printed is not None
    assert json.loads(printed) == spec["print"]
