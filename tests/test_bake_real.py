"""Bake files of the kinds users have (tests/cases/bake-real): each loads unchanged,
every target prints, the targets that cannot be built here are refused in one located
line, and the ones whose Dockerfiles need only the busybox base build."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.errors import SpecError
from pipeline.hcl.files import parse
from pipeline.spec.bakefile import find_files, parse_bake_file
from pipeline.spec.bakeproject import load_bake, load_definition
from tests.conftest import make_cli

CASES = Path(__file__).parent / "cases" / "bake-real"
PROJECTS = ("buildkit-style", "buildx-style", "app-style")


def all_targets(project: Path) -> list[str]:
    from pipeline.spec.bake import evaluate_files

    files = [(parse_bake_file(f), f.directory) for f in find_files([], project, {})]
    return sorted({t.name for t in evaluate_files(files, {}).targets})


@pytest.mark.parametrize("name", PROJECTS)
def test_every_target_prints(name: str) -> None:
    project = CASES / name
    targets = all_targets(project)
    assert len(targets) >= 4
    data = json.loads(load_definition(find_files([], project, {}), targets, [], {}).print_json())
    assert sorted(data["target"]) == sorted(set(targets) | {"base"} & set(targets))
    for t in data["target"].values():
        assert t["context"] and t["dockerfile"]


def test_buildkit_style_resolution() -> None:
    project = CASES / "buildkit-style"
    names = all_targets(project)
    assert {"lint-default", "lint-labs", "lint-yaml"} <= set(names)
    dockerfiles = [n for n in names if n.startswith("validate-dockerfile-")]
    assert len(dockerfiles) == 3
    assert all(len(n) == len("validate-dockerfile-") + 32 for n in dockerfiles)  # md5 names
    data = json.loads(load_definition(find_files([], project, {}), names, [], {}).print_json())
    t = data["target"]
    assert t["meta-helper"]["tags"] == ["example/kit:local"]
    assert t["image"]["tags"] == ["example/kit:local"] and "target" not in t["image"]
    assert "contexts" not in t["integration-tests"]  # the condition gives null
    assert t["binaries"]["output"] == [{"dest": "./bin/build", "type": "local"}]
    assert t["binaries"]["args"] == {"BUILDKIT_CONTEXT_KEEP_GIT_DIR": "1"}  # nulls dropped
    assert t["lint-labs"]["args"]["BUILDTAGS"] == "dfrunsecurity"
    env = {"DESTDIR": "/out", "IMAGE_TARGET": "rootless", "TEST_CONTEXT": "sub"}
    data = json.loads(load_definition(find_files([], project, env), names, [], env).print_json())
    t = data["target"]
    assert t["binaries"]["output"] == [{"dest": "/out", "type": "local"}]
    assert t["image"]["tags"] == ["example/kit:local-rootless"]
    assert t["image"]["target"] == "rootless"
    assert t["integration-tests-binaries"]["context"] == "sub"  # a default following TEST_CONTEXT
    assert "contexts" not in t["integration-tests"]
    env["TEST_BINARIES_CONTEXT"] = "."
    data = json.loads(load_definition(find_files([], project, env), names, [], env).print_json())
    t = data["target"]
    assert t["integration-tests"]["contexts"] == {"binaries": "target:integration-tests-binaries"}
    assert t["integration-tests"]["context"] == "sub"


@pytest.mark.parametrize(
    ("project", "target", "message"),
    [
        ("buildkit-style", "binaries-cross", 'attribute "platforms": cross-platform builds'),
        ("buildkit-style", "validate-dockerfile-*", 'attribute "call": "check" is not supported'),
        ("buildx-style", "release", 'attribute "platforms": cross-platform builds'),
    ],
)
def test_what_cannot_build_here_is_refused(project: str, target: str, message: str) -> None:
    root = CASES / project
    with pytest.raises(SpecError) as info:
        load_bake(find_files([], root, {}), [target], [], {}, {}, root)
    assert message in str(info.value)
    assert str(info.value).startswith(str(root / "docker-bake.hcl") + ":") or str(
        info.value
    ).startswith("docker-bake.hcl:")


def test_files_parse_as_plain_hcl_too() -> None:
    for name in PROJECTS:
        for f in sorted((CASES / name).glob("docker-bake*.hcl")):
            assert parse(f.read_text(), str(f)).body


BUILDABLE = {
    "buildkit-style": [
        "binaries",
        "release",
        "lint-default",
        "lint-labs",
        "lint-yaml",
        "validate-vendor",
        "vendor",
        "mod-outdated",
        "integration-tests-base",
    ],
    "buildx-style": ["binaries", "validate", "update-docs", "test", "integration-test"],
    "app-style": [],  # the default group
}


@pytest.mark.slow
@pytest.mark.parametrize("name", PROJECTS)
def test_buildable_targets_build(
    name: str, busybox_tar: Path, store_path: Path, tmp_path: Path
) -> None:
    project = tmp_path / name
    shutil.copytree(CASES / name, project)
    cli = make_cli(store_path, project)
    cli("import", str(busybox_tar), "--tag", "busybox:latest")
    targets = BUILDABLE[name]
    if name == "buildkit-style":
        targets = [t for t in targets if t != "release"]  # release inherits binaries-cross
    result = cli("bake", "--progress", "plain", *targets, timeout=600)
    assert " 0 failed" in result.stdout
    if name == "buildkit-style":
        assert sorted(p.name for p in (project / "bin" / "build").iterdir()) == ["kitctl", "kitd"]
        assert (project / "bin" / "build" / "kitd").stat().st_mode & 0o111
        assert (project / "modules.txt").read_text() == "cmd/kitctl.sh\ncmd/kitd.sh\n"
    if name == "buildx-style":
        assert (project / "bin" / "build" / "docker-tool").is_file()
        assert (project / "docs" / "reference" / "tool.md").read_text() == "# tool.sh (md)\n"
        assert (project / "bin" / "coverage" / "out.txt").read_text() == "tool ok\n"
    if name == "app-style":
        images = cli("images").stdout
        assert "registry.example.com/acme/api:latest" in images
        assert "registry.example.com/acme/worker:latest" in images
        assert "cache type" not in result.stderr  # a registry cache-from is understood
        plan = cli("bake", "--print", "worker").stdout
        args = json.loads(plan)["target"]["worker"]["args"]
        assert args == {"CONCURRENCY": "4", "SERVICE": "worker"}
