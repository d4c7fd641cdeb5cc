"""bake files: ``--print`` of our own cases against bake's documented resolution, and
the errors bake files can make."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

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


# --------------------------------------------------------------------------- lowering

DOCKERFILE = """\
FROM busybox:latest AS base
ARG WHO=nobody
RUN echo "$WHO" > /who
FROM base AS final
"""
WITH_CONTEXT = DOCKERFILE + "COPY --from=extra data.txt /data.txt\n"


def project(tmp_path: Path, bake: str, name: str = "docker-bake.hcl") -> Path:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "ctx.Dockerfile").write_text(WITH_CONTEXT)
    (tmp_path / "extra").mkdir(exist_ok=True)
    (tmp_path / "extra" / "data.txt").write_text("data\n")
    (tmp_path / name).write_text(bake)
    return tmp_path


def bake(tmp_path: Path, names: list[str], env: dict[str, str] | None = None, **kw: Any) -> Any:
    from pipeline.spec.bakeproject import load_bake

    env = env or {}
    return load_bake(
        find_files(kw.pop("files", []), tmp_path, env),
        names,
        kw.pop("set", []),
        env,
        {},
        kw.pop("cwd", tmp_path),
        **kw,
    )


def test_a_target_is_an_app_with_its_stage_contexts_labels_and_network(tmp_path: Path) -> None:
    from pipeline.model import Meta, Run

    root = project(
        tmp_path,
        """
        target "web" {
          dockerfile = "ctx.Dockerfile"
          target   = "final"
          args     = { WHO = "web" }
          labels   = { "a.b" = "c" }
          contexts = { extra = "./extra" }
          network  = "none"
          tags     = ["acme/web:1"]
        }
        """,
    )
    p = bake(root, ["web"])
    images = p.fleet.images
    assert sorted(images) == ["app.web", "app.web/base"]
    web = images["app.web"]
    assert web.tags == ("acme/web:1",) and web.is_app
    copy = web.steps[0]
    assert copy.context == str(root / "extra") and copy.sources == ("data.txt",)
    assert isinstance(web.steps[-1], Meta) and web.steps[-1].value == (("a.b", "c"),)
    run = images["app.web/base"].steps[0]
    assert isinstance(run, Run) and run.network == "none" and run.env == (("WHO", "web"),)
    assert p.outputs == ("app.web",)


REFUSED = [
    ('ssh = ["default"]', 'attribute "ssh": SSH agent forwarding is not supported'),
    ('entitlements = ["security.insecure"]', 'attribute "entitlements"'),
    ('extra-hosts = { h = "1.2.3.4" }', 'attribute "extra-hosts"'),
    ('ulimits = ["nofile=1024:1024"]', 'attribute "ulimits"'),
    ('shm-size = "128m"', 'attribute "shm-size": "128m" cannot be set'),
    ('network = "host"', 'attribute "network": "host" is not supported'),
    ('context = "https://github.com/a/b.git"', 'attribute "context": remote contexts'),
    ('output = ["type=s3"]', 'attribute "output": unknown output type "s3"'),
    ('platforms = ["linux/riscv64"]', 'attribute "platforms": cross-platform builds'),
    ('call = "outline"', 'attribute "call": "outline" is not supported'),
    ('target = "nope"', 'target stage "nope" is not a stage of the Dockerfile'),
    ('dockerfile = "missing.Dockerfile"', 'attribute "dockerfile": Dockerfile not found'),
]


@pytest.mark.parametrize(("attr", "message"), REFUSED)
def test_what_cannot_apply_is_refused_in_one_located_line(
    tmp_path: Path, attr: str, message: str
) -> None:
    root = project(tmp_path, f'target "t" {{\n  {attr}\n}}\n')
    with pytest.raises(PipelineError) as info:
        bake(root, ["t"])
    text = str(info.value)
    assert message in text and "\n" not in text
    assert text.startswith(("docker-bake.hcl:2:3:", "docker-bake.hcl:1:1:"))


def test_metadata_that_cannot_be_kept_is_a_warning(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        'target "t" {\n  attest = ["type=sbom"]\n  cache-to = ["type=gha"]\n'
        '  shm-size = "64m"\n}\n',
    )
    warnings = bake(root, ["t"]).warnings
    assert any('attribute "attest": attestations are not produced' in w for w in warnings)
    assert any('cache type "gha" is not supported' in w for w in warnings)
    assert all(w.startswith("docker-bake.hcl:") for w in warnings)


def test_paths_are_relative_to_the_working_directory_unless_asked(tmp_path: Path) -> None:
    root = project(tmp_path, "")
    sub = root / "sub"
    sub.mkdir()
    (sub / "Dockerfile").write_text("FROM busybox:latest\nRUN true\n")
    (sub / "bake.hcl").write_text('target "t" {\n  context = "."\n}\n')
    here = bake(root, ["t"], files=["sub/bake.hcl"])
    assert here.fleet.images["app.t"].loc.file == str(root / "Dockerfile")  # the cwd's
    there = bake(root, ["t"], {"BUILDX_BAKE_FILE_RELATIVE_PATHS": "1"}, files=["sub/bake.hcl"])
    assert there.fleet.images["app.t"].loc.file == str(sub / "Dockerfile")
    forced = bake(
        root,
        ["t"],
        {"BUILDX_BAKE_FILE_RELATIVE_PATHS": "1"},
        files=["sub/bake.hcl"],
        set=["t.context=cwd://."],
    )
    assert forced.fleet.images["app.t"].loc.file == str(root / "Dockerfile")


def test_bake_file_from_the_environment_and_standard_input(tmp_path: Path) -> None:
    root = project(tmp_path, "", name="other.hcl")
    (root / "other.hcl").write_text('target "x" {}\n')
    found = find_files([], root, {"BUILDX_BAKE_FILE": "other.hcl"})
    assert [f.name for f in found] == ["other.hcl"]
    stdin = find_files(["-"], root, {}, stdin='{"target": {"j": {"tags": ["j:1"]}}}')
    printed = json.loads(load_definition(stdin, ["j"], [], {}).print_json())
    assert printed["target"]["j"]["tags"] == ["j:1"]


def test_compose_files_and_missing_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="no bake file"):
        find_files([], tmp_path, {})
    with pytest.raises(PipelineError, match=r"nope\.hcl: no such bake file"):
        find_files(["nope.hcl"], tmp_path, {})
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    with pytest.raises(PipelineError, match="Compose files are not read"):
        find_files([], tmp_path, {})


def test_json_errors_are_located(tmp_path: Path) -> None:
    (tmp_path / "docker-bake.json").write_text(
        '{\n  "target": {\n    "a": {"tags": [1,]}\n  }\n}\n'
    )
    with pytest.raises(PipelineError) as info:
        load_definition(find_files([], tmp_path, {}), ["a"], [], {})
    assert str(info.value).startswith("docker-bake.json:3:22: JSON syntax error")


def test_apps_and_targets_share_one_fleet(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        """
        variable "SUITE" { default = "latest" }
        app "tool" {
          from = "busybox:${var.SUITE}"
          tags = ["tool:1"]
        }
        target "web" { target = "base" }
        group "default" { targets = ["web", "tool"] }
        """,
    )
    p = bake(root, [])
    assert p.outputs == ("app.web", "app.tool")
    assert p.fleet.images["app.tool"].base.ref == "busybox:latest"
    assert p.fleet.groups["default"] == ("app.web", "app.tool")


def test_a_specs_directory_with_targets_is_read_with_bake_rules(tmp_path: Path) -> None:
    from pipeline.spec.loader import load_fleet

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "Dockerfile").write_text("FROM busybox:latest\nARG V\nRUN echo $V > /v\n")
    (specs / "bake.hcl").write_text(
        'variable "V" { default = "1" }\ntarget "t" {\n  args = { V = V }\n}\n'
    )
    fleet = load_fleet(specs, {"V": "2"}, {})
    run = fleet.images["app.t"].steps[0]
    assert run.env == (("V", "2"),)  # --set sets variables; the context is the file's dir
    assert fleet.images["app.t"].loc.file == str(specs / "Dockerfile")


def test_app_blocks_take_a_target_stage(tmp_path: Path) -> None:
    from pipeline.spec.loader import load_fleet

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "Dockerfile").write_text(
        "FROM busybox:latest AS one\nRUN echo 1 > /one\nFROM one AS two\nRUN false\n"
    )
    (specs / "app.hcl").write_text('app "x" {\n  dockerfile = "Dockerfile"\n  target = "one"\n}\n')
    fleet = load_fleet(specs, {}, {})
    assert sorted(fleet.images) == ["app.x"]
    assert fleet.images["app.x"].base.ref == "busybox:latest"


def test_volatile_values_mark_the_keys_that_see_them(tmp_path: Path) -> None:
    from pipeline.build.volatile import volatile_keys
    from pipeline.build.workspace import Workspace

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "Dockerfile").write_text(
        "FROM busybox:latest\nRUN echo a > /a\nARG STAMP\nRUN echo $STAMP > /s\nRUN echo b > /b\n"
    )
    (specs / "bake.hcl").write_text(
        'target "t" {\n  args = { STAMP = uuidv4() }\n}\ntarget "u" {}\n'
    )
    ws = Workspace(tmp_path / "store", specs=specs, environ={})
    graph = ws.compile()
    marks = volatile_keys(graph, ws.fleet)
    chain = graph.images["app.t"].nodes
    labels = [graph.node(k).label for k in chain]
    assert [labels[i] for i, k in enumerate(chain) if k in marks] == [
        "RUN echo $STAMP > /s",
        "RUN echo b > /b",
    ]
    assert all("uuidv4" in marks[k] for k in marks)
    assert not set(graph.images["app.u"].nodes) & set(marks)


def test_cli_print_and_its_errors(tmp_path: Path) -> None:
    from tests.conftest import make_cli

    root = project(
        tmp_path, 'variable "TAG" { default = "1" }\ntarget "default" {\n  tags = ["t:${TAG}"]\n}\n'
    )
    cli = make_cli(tmp_path / "store", root)
    out = json.loads(cli("bake", "--print", "--var", "TAG=2", "--set", "*.args.A=b").stdout)
    assert out["target"]["default"]["tags"] == ["t:2"]
    assert out["target"]["default"]["args"] == {"A": "b"}
    bad = cli("bake", "--print", "--set", "nothing", check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == "--set nothing: expected TARGET.KEY=VALUE"
    unknown = cli("bake", "--print", "--var", "NOPE=1", check=False)
    assert unknown.returncode == 2 and "no variable 'NOPE'" in unknown.stderr
    assert "Traceback" not in bad.stderr + unknown.stderr


def test_groups_may_list_apps_by_reference(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        """
        app "tool" { from = "busybox:latest" }
        target "web" { target = "base" }
        group "all" { targets = [app.tool, "web"] }
        """,
    )
    assert bake(root, ["all"]).outputs == ("app.tool", "app.web")
    with pytest.raises(PipelineError, match='no target matches "wbe" \\(did you mean "web"'):
        bake(root, ["all"], set=["wbe.tags=x"])


def test_a_specs_directory_of_functions_only_is_an_empty_bake_project(tmp_path: Path) -> None:
    from pipeline.spec.loader import load_fleet

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "f.hcl").write_text('function "f" {\n  params = []\n  result = 1\n}\n')
    (specs / "a.hcl").write_text('app "x" {\n  from = "busybox:latest"\n}\n')
    assert sorted(load_fleet(specs, {}, {}).images) == ["app.x"]
