"""`pipeline build CONTEXT` without a sandbox: which arguments are a context, tags as
stored, base pulling by --pull, the step table, and the usage errors of the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.build.contextbuild import (
    ContextRequest,
    app_id_for,
    ensure_bases,
    fleet_of,
    is_context_path,
    lower,
    normal_tag,
    step_rows,
)
from pipeline.errors import UsageError
from pipeline.model import Copy, Meta, Run
from pipeline.store import Store
from tests.conftest import Cli

DOCKERFILE = """\
FROM busybox:latest
RUN echo one > /one
# a comment
RUN echo two \\
    > /two
COPY . opt/source-code
ENV GREETING=hi
ENTRYPOINT FLASK_APP=/opt/source-code/app.py flask run
"""


@pytest.mark.parametrize(
    ("arg", "is_path"),
    [
        (".", True),
        ("..", True),
        ("./web", True),
        ("services/web", True),
        ("/abs/ctx", True),
        ("web", False),
        ("Dockerfile", False),
        ("app.web", False),
        ("default", False),
    ],
)
def test_a_path_is_told_by_its_spelling(arg: str, is_path: bool) -> None:
    assert is_context_path(arg) is is_path


def test_tags_are_stored_as_docker_names_them() -> None:
    assert normal_tag("user/image") == "user/image:latest"
    assert normal_tag("user/image:1.2") == "user/image:1.2"
    assert normal_tag("127.0.0.1:5000/user/image") == "127.0.0.1:5000/user/image:latest"
    with pytest.raises(UsageError, match="-t Bad: "):
        normal_tag("Bad")
    with pytest.raises(UsageError, match="not a digest"):
        normal_tag("user/image@sha256:" + "a" * 64)


def test_the_app_id_is_the_context_directory_in_its_own_namespace(tmp_path: Path) -> None:
    assert app_id_for(tmp_path / "My App") == "app.build:my-app"
    assert app_id_for(Path("/")) == "app.build:context"


def _context(tmp_path: Path, text: str = DOCKERFILE) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(text)
    (ctx / "app.py").write_text("print('hi')\n")
    return ctx


def test_the_request_lowers_to_one_app_with_its_tags(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    low, dockerfile = lower(ContextRequest("ctx", tags=("user/image",)), tmp_path)
    assert dockerfile == ctx / "Dockerfile"
    fleet = fleet_of(low)
    app = fleet.images["app.build:ctx"]
    assert app.is_app and app.tags == ("user/image:latest",)
    assert [type(s) for s in app.steps] == [Run, Run, Copy, Meta, Meta]
    assert app.base.ref == "busybox:latest"


def test_a_file_argument_is_the_dockerfile_and_its_directory_the_context(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    low, dockerfile = lower(ContextRequest("Dockerfile"), ctx)
    assert dockerfile == ctx / "Dockerfile"
    assert low.app_id == "app.build:ctx"


def test_stdin_dockerfile_build_args_and_target(tmp_path: Path) -> None:
    _context(tmp_path)
    text = "ARG V=1\nFROM busybox:latest AS first\nARG V\nRUN echo $V\nFROM first\nRUN echo 2\n"
    req = ContextRequest("ctx", "-", text, build_args=(("V", "7"),), target="first")
    low, dockerfile = lower(req, tmp_path)
    assert dockerfile is None
    (app,) = low.images
    assert app.id == "app.build:ctx"
    step = app.steps[0]
    assert isinstance(step, Run) and ("V", "7") in step.env


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (ContextRequest("nowhere"), "nowhere: no such context directory"),
        (ContextRequest("ctx", "Other.Dockerfile"), "Other.Dockerfile: no such Dockerfile"),
        (ContextRequest("ctx/Dockerfile", "x"), "with -f, CONTEXT must be a directory"),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(
    tmp_path: Path, req: ContextRequest, message: str
) -> None:
    _context(tmp_path)
    with pytest.raises(UsageError, match=message):
        lower(req, tmp_path)


def test_pull_policies(tmp_path: Path) -> None:
    text = "FROM busybox:latest\nFROM 127.0.0.1:5000/base:1\nFROM scratch\n"
    ctx = _context(tmp_path, text)
    low, _ = lower(ContextRequest(str(ctx)), tmp_path)
    store = Store(tmp_path / "store")
    pulled: list[str] = []

    def pull(ref: str) -> str:
        pulled.append(ref)
        return "sha256:" + "0" * 64

    # missing: everything the store lacks (the unqualified name from Docker Hub)
    assert ensure_bases(store, low.images, "missing", pull) == [
        "busybox:latest",
        "127.0.0.1:5000/base:1",
    ]
    with pytest.raises(UsageError, match=r"Dockerfile:1:1: FROM busybox:latest: not in the store"):
        ensure_bases(store, low.images, "never", pull)


def test_step_rows_list_every_instruction_with_its_result() -> None:
    from pipeline.errors import Location
    from pipeline.model import BaseRef, ImageDef

    f = "Dockerfile"
    image = ImageDef(
        "app.build:x",
        BaseRef("store", "busybox:latest"),
        (
            Run("echo one > /one", loc=Location(f, 2, 1)),
            Run("echo two > /two", loc=Location(f, 4, 1)),
            Meta("env", (("GREETING", "hi"),), Location(f, 7, 1)),
        ),
        loc=Location(f, 1, 1),
    )
    plans = {"app.build:x": ("base", "k1", "k2")}
    results = {
        "base": ("cached", 0.0, 0, ""),
        "k1": ("cached", 0.0, 10240, "sha256:aa"),
        "k2": ("failed", 1.5, 0, ""),
    }
    rows = step_rows([image], plans, results, DOCKERFILE)
    assert [(r.number, r.total, r.outcome) for r in rows] == [
        (1, 4, "base"),
        (2, 4, "cached"),
        (3, 4, "failed"),
        (4, 4, "config"),
    ]
    assert [r.text for r in rows] == [
        "FROM busybox:latest",
        "RUN echo one > /one",
        "RUN echo two",  # the first line of a continued instruction
        "ENV GREETING=hi",
    ]
    assert rows[1].size == 10240 and rows[1].layer == "sha256:aa"


# --- the command line: which meaning, and the errors ------------------------------------


def test_names_without_a_fleet_hint_at_the_path_spelling(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    proc = cli("build", "web", check=False)
    assert proc.returncode == 2
    assert "write ./web" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("a", "b", "-t", "x"), "give one context path, or fleet names"),
        (("./ctx", "b"), "give one context path, or fleet names"),
        (("--specs", "specs", "./ctx"), "--specs applies to fleet names, not to a context"),
        (("--cluster", "local:2", "."), "--cluster applies to fleet names"),
        (("-t", "Bad Name", "./ctx"), "-t Bad Name: "),
        (("--build-arg", "NOEQUALS", "./ctx"), "--build-arg 'NOEQUALS': expected NAME=VALUE"),
        (("./missing",), "./missing: no such context directory"),
        (("web", "-t", "x"), "web: no such context directory"),
    ],
)
def test_usage_errors(cli: Cli, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    _context(tmp_path)
    proc = cli("build", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_never_pull_names_the_from_line(cli: Cli, tmp_path: Path) -> None:
    _context(tmp_path)
    proc = cli("build", "--pull=never", "./ctx", check=False)
    assert proc.returncode == 2
    assert f"{tmp_path}/ctx/Dockerfile:1:1: FROM busybox:latest: not in the store" in proc.stderr
