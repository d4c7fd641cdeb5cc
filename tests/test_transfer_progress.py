"""Byte progress of push, pull and the remote cache, with a real registry on 127.0.0.1:
`pipeline push`/`pull` and `build-all --cache-to/--cache-from` print each layer's
transfer as lines (0/25/50/75/100 %) when stderr is not a terminal, and a step taken
from the cache counts in the summary's ``pulled`` column."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import Cli, make_cli
from tests.test_registry_support import Registry, registry_fixture  # noqa: F401

pytestmark = pytest.mark.slow

FLEET = """
image "big" {
  from = "busybox:latest"
  run { command = "head -c 3000000 /dev/urandom > /blob" }
  tags = ["%s/acme/big:1"]
}
"""


def transfers(stderr: str, verb: str) -> dict[str, list[int]]:
    """label -> the percentages its lines showed."""
    found: dict[str, list[int]] = {}
    for m in re.finditer(
        rf"^\[xfer \] ({verb} .*?)(?: [0-9a-f]{{12}})?: .* \((\d+)%", stderr, re.M
    ):
        found.setdefault(m.group(1), []).append(int(m.group(2)))
    return found


def rising(percents: list[int]) -> bool:
    """From 0 to 100 %, never back."""
    return percents[0] == 0 and percents[-1] == 100 and percents == sorted(percents)


def test_push_pull_and_cache_show_byte_progress(
    busybox_store: Cli, registry: Registry, tmp_path: Path, busybox_tar: Path
) -> None:
    if os.geteuid() != 0 or shutil.which("busybox") is None:
        pytest.fail("needs root and busybox: run bash .ci/setup")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "fleet.hcl").write_text(FLEET % registry.host)
    cache = f"{registry.host}/acme/cache"
    chunks = {"PIPELINE_REGISTRY_CHUNK": str(1 << 20)}  # 1 MiB PATCHes
    built = busybox_store("build-all", "--progress", "plain", "--cache-to", cache, env=chunks)
    published = transfers(built.stderr, "cache push")
    assert published and all(rising(p) for p in published.values()), built.stderr
    assert max(len(p) for p in published.values()) >= 4, built.stderr  # chunked: between too

    pushed = busybox_store("push", "big", env=chunks)
    layers = transfers(pushed.stderr, "push")
    # the busybox layer goes up; the 3 MB one is mounted from the cache repository
    assert list(layers) == [f"push {registry.host}/acme/big layer 1/2"], pushed.stderr
    assert rising(layers[f"push {registry.host}/acme/big layer 1/2"]), pushed.stderr
    assert "1 mounted" in pushed.stdout  # (the other upload is the config)

    fresh = make_cli(tmp_path / "fresh", tmp_path)
    pulled = fresh("pull", f"{registry.host}/acme/big:1")
    got = transfers(pulled.stderr, "pull")
    assert len(got) == 2 and all(rising(p) for p in got.values()), pulled.stderr

    other = make_cli(tmp_path / "other", tmp_path)
    other("import", str(busybox_tar), "--tag", "busybox:latest")
    again = other("build-all", "--progress", "plain", "--cache-from", cache)
    fetched = transfers(again.stderr, "RUN head")  # labelled by the step it is for
    assert list(fetched) == ["RUN head -c 3000000 /dev/urandom > /blob (cache)"], again.stderr
    assert rising(next(iter(fetched.values()))), again.stderr
    assert re.search(r"^\[1/1\] pulled  RUN head -c 3000000", again.stderr, re.M), again.stderr
    row = next(line for line in again.stdout.splitlines() if line.startswith("image.big"))
    assert row.split()[1:5] == ["1", "0", "1", "0"]  # layers, cached, pulled, built
    assert "1 unique nodes: 0 built, 0 cached, 1 pulled" in again.stdout
