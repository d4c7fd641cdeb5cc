"""The spec index and partial loads: ``build APP`` loads only the files and blocks APP
reaches, gets exactly the ImageDefs a whole load gives, and falls back to the whole
load whenever the index cannot decide."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.build.workspace import Workspace
from pipeline.errors import SpecError
from pipeline.hcl.files import parse_file
from pipeline.spec import index as spec_index
from pipeline.spec.loader import load_fleet

FLEET = """
variable "TAG" { default = "1" }

locals {
  common = { TEAM = "core" }
}

image "base" {
  from = "busybox:latest"
  run { command = "echo base" }
}

image "deps_a" {
  from = image.base
  run { command = "echo a" }
}

image "deps_b" {
  from = image.base
  run { command = "echo b" }
}

image "tools" {
  from = "busybox:latest"
  run { command = "echo tools" }
}
"""

APPS_1 = """
app "parent" {
  from = image.deps_a
  env  = local.common
}

app "one" {
  inherits = ["parent"]
  source   = "src"
  tags     = ["acme/one:${var.TAG}"]
}
"""

APPS_2 = """
image "with_copy" {
  from = image.deps_b
  copy {
    from    = image.tools
    src     = "/bin"
    dest    = "/opt/tools"
  }
}

app "two" {
  from = image.with_copy
}

group "both" { targets = ["one", app.two] }
"""


def _specs(tmp_path: Path) -> Path:
    specs = tmp_path / "specs"
    (specs / "src").mkdir(parents=True)
    (specs / "src" / "a.txt").write_text("a\n")
    (specs / "a-fleet.hcl").write_text(FLEET)
    (specs / "b-apps.hcl").write_text(APPS_1)
    (specs / "c-apps.hcl").write_text(APPS_2)
    return specs


def _index(specs: Path) -> dict[str, spec_index.FileEntry]:
    index, _ = spec_index.refresh(specs, {}, None)
    return index


def test_closure_follows_traversals_strings_and_locals(tmp_path: Path) -> None:
    specs = _specs(tmp_path)
    index = _index(specs)
    found = spec_index.closure(index, ["one"])
    assert found is not None
    files, blocks = found
    assert files == [str(specs / "a-fleet.hcl"), str(specs / "b-apps.hcl")]
    # inherits by string, from by traversal; tools/deps_b/two are not reached
    assert blocks == {("app", "one"), ("app", "parent"), ("image", "deps_a"), ("image", "base")}
    two = spec_index.closure(index, ["app.two"])
    assert two is not None
    assert ("image", "tools") in two[1]  # copy.from
    group = spec_index.closure(index, ["both"])
    assert group is not None
    assert {("app", "one"), ("app", "two"), ("group", "both")} <= group[1]
    assert len(group[0]) == 3


@pytest.mark.parametrize(
    "extra, names",
    [
        ('app "one" {\n  from = image.base\n}\n', ["one"]),  # defined twice
        ('app "m" {\n  matrix = { v = ["x"] }\n  from = image.base\n}\n', ["m-x"]),  # made name
        ('target "t" {}\n', ["one"]),  # a bake project
        ('app "z" {\n  from = image.nowhere\n}\n', ["z"]),  # unknown traversal
    ],
)
def test_closure_declines_what_it_cannot_decide(
    tmp_path: Path, extra: str, names: list[str]
) -> None:
    specs = _specs(tmp_path)
    (specs / "d-more.hcl").write_text(extra)
    assert spec_index.closure(_index(specs), names) is None


def test_refresh_reindexes_only_changed_files(tmp_path: Path) -> None:
    specs = _specs(tmp_path)
    first, parsed = spec_index.refresh(specs, {}, None)
    assert set(parsed) == set(first)
    again, parsed = spec_index.refresh(specs, first, None)
    assert again == first and parsed == {}
    path = specs / "c-apps.hcl"
    path.write_text(APPS_2 + '\napp "three" {\n  from = image.base\n}\n')
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    third, parsed = spec_index.refresh(specs, again, None)
    assert list(parsed) == [str(path)]
    assert ["app", "three"] in [row[:2] for row in third[str(path)]["blocks"]]
    assert spec_index.decode(spec_index.encode(third)) == third
    assert spec_index.decode(b"not json") == {}


def test_partial_load_gives_the_images_a_whole_load_gives(tmp_path: Path) -> None:
    specs = _specs(tmp_path)
    whole = load_fleet(specs, {}, {})
    sizes = {"one": 4, "two": 5, "both": 8, "image.tools": 1}
    for name, size in sizes.items():
        ws = Workspace(tmp_path / "store", specs=specs, environ={})
        ids = ws.select([name], partial=True)
        part = ws.fleet
        assert len(part.images) == size, name
        for image_id, image in part.images.items():
            assert image == whole.images[image_id]
        assert set(ids) <= set(part.images)
    # a second command reads the index from the store, not the files' text
    ws = Workspace(tmp_path / "store", specs=specs, environ={})
    assert ws.select(["one"], partial=True) == ["app.one"]
    assert "app.two" not in ws.fleet.images


def test_partial_load_skips_errors_elsewhere_but_a_missed_reference_falls_back(
    tmp_path: Path,
) -> None:
    specs = _specs(tmp_path)
    # an unrelated broken app does not stop building "one"
    (specs / "d-broken.hcl").write_text('app "broken" {\n  from = image.deps_a\n  user = 3\n}\n')
    ws = Workspace(tmp_path / "store", specs=specs, environ={})
    assert ws.select(["one"], partial=True) == ["app.one"]
    # a name computed at run time (the variable's value) is not in the index: the
    # partial load fails, so the whole directory is loaded and its first error shown
    (specs / "d-broken.hcl").write_text(
        'variable "B" { default = "busybox:latest" }\napp "dyn" {\n  from = var.B\n}\n'
    )
    ws = Workspace(tmp_path / "store", specs=specs, environ={}, overrides={"B": "image.tools"})
    assert ws.select(["dyn"], partial=True) == ["app.dyn"]
    assert ws.fleet.images["app.dyn"].base.ref == "image.tools"


def test_parse_file_part_unpickles_only_what_is_kept(tmp_path: Path) -> None:
    from pipeline.hcl.files import parse_file_part
    from pipeline.hcl.values import Block

    class Cache(dict[str, bytes]):
        def put(self, key: str, data: bytes) -> None:
            self[key] = data

    specs = _specs(tmp_path)
    path = specs / "a-fleet.hcl"
    cache = Cache()

    def keep(item: object) -> bool:
        return isinstance(item, Block) and item.labels == ("deps_b",)

    for _ in range(2):  # a miss, then a hit
        part = parse_file_part(path, str(path), cache, keep)
        whole = parse_file(path, str(path))
        assert [b for b in whole.body if keep(b)] == list(part.body)
    assert len(cache) == 1
    with pytest.raises(SpecError):
        (specs / "x.hcl").write_text("app {")
        parse_file_part(specs / "x.hcl", "x.hcl", cache, keep)
