"""The peer comparison end to end on a tiny fleet, so the script cannot rot: every
installed tool builds, the floor runs, JSON and Markdown are written and the work dir
(daemon data root included) is gone afterwards."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from benchmarks import compare_peers

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="builders need root"),
]


def test_compare_peers_smoke(tmp_path: Path) -> None:
    tools = ["pipeline"]
    tools += [
        t for t, exe in (("buildkit", "dockerd"), ("buildah", "buildah")) if shutil.which(exe)
    ]
    out = tmp_path / "result"
    work = tmp_path / "work"
    argv = ["--apps", "2", "--dep-sets", "1", "--dep-mb", "0.25", "--system-mb", "0.1"]
    argv += ["--files", "2", "--repeats", "1", "--tools", ",".join(tools)]
    argv += ["--workdir", str(work), "--out", str(out)]
    assert compare_peers.main(argv) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    summary = data["sizes"][0]["summary"]
    for tool in tools:
        assert summary[tool]["error"] is None, summary[tool]["error"]
        assert summary[tool]["cold"] > 0 and summary[tool]["noop"] > 0
        assert summary[tool]["change"] > 0 and summary[tool]["growth_bytes"] > 0
    assert summary["floor"]["unique_layer_bytes"] > 0
    assert summary["ratios"]["floor"]["cold"] > 0
    assert "| pipeline |" in out.with_suffix(".md").read_text()
    assert not work.exists()
