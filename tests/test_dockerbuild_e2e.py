"""The user's notes, verbatim with `pipeline` in place of `docker`, on the real sandbox:
`pipeline build -t user/image .` (every step and its result), `pipeline run` answering
HTTP, `pipeline history` one row per instruction with sizes, `pipeline push` to a real
registry (Debian's docker-registry) and pull back equal, one more instruction rebuilds
only that step, a failing step fixed rebuilds from that step, and an `app` with the same
steps shares every layer (one store entry). On the busybox base (fast, httpd standing in
for flask) and on the Debian base (the notes' apt + pip + flask, a few minutes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cli, make_cli
from tests.test_registry_support import (
    Registry,
    free_port,
    registry_fixture,  # noqa: F401
)

pytestmark = pytest.mark.slow

BUSYBOX_DOCKERFILE = """\
FROM busybox:latest
RUN mkdir -p /srv && echo python3 > /srv/apt.txt
RUN echo flask > /srv/pip.txt
RUN echo flask-mysql >> /srv/pip.txt
COPY . opt/source-code
ENV PORT=5000
ENTRYPOINT httpd -f -p 127.0.0.1:$PORT -h /opt/source-code
"""

# the notes' Dockerfile; Debian differs from Ubuntu in the package names and in pip's
# externally-managed override
DEBIAN_DOCKERFILE = """\
FROM debian:bookworm
RUN apt-get update
RUN DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-pip
ENV PIP_BREAK_SYSTEM_PACKAGES=1
RUN pip install flask
RUN pip install flask-mysql
COPY . opt/source-code
ENTRYPOINT FLASK_APP=/opt/source-code/app.py flask run
"""

FLASK_APP = """\
from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return "hello from user/image\\n"
"""


@dataclass
class Base:
    name: str
    dockerfile: str
    port_env: str  # the variable the server's port comes from
    make: Callable[[Cli], None]


def _get(url: str, deadline: float = 60) -> str:
    end = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


def _serve(store: Path, cwd: Path, name: str, port_env: str, path: str) -> str:
    """`pipeline run NAME -e PORT_ENV=<free port>`, GET ``path``, stop it with SIGTERM."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "-e", f"{port_env}={port}", name],
        cwd=cwd,
        env=dict(os.environ, PIPELINE_STORE=str(store)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        return _get(f"http://127.0.0.1:{port}{path}")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) in (0, 128 + signal.SIGTERM)


def _steps(stdout: str) -> dict[str, str]:
    """The build's step table: instruction -> result."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("STEP"))
    column = lines[start].index("INSTRUCTION")
    out = {}
    for line in lines[start + 1 :]:
        if "/" not in line.split()[0]:
            break
        out[line[column:]] = line.split()[1]
    return out


def _built(report: Path) -> list[str]:
    nodes = json.loads(report.read_text())["nodes"]
    return [n["label"] for n in nodes if n["outcome"] == "built"]


def _layers(store: Path, cli: Cli, name: str) -> list[str]:
    return [layer["diff_id"] for layer in json.loads(cli("inspect", name).stdout)["layers"]]


def notes_flow(base: Base, work: Path, registry: Registry, app_file: tuple[str, str]) -> None:
    ctx = work / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(base.dockerfile)
    (ctx / ".dockerignore").write_text("Dockerfile\n")  # so Dockerfile edits keep the COPY
    (ctx / app_file[0]).write_text(app_file[1])
    store = work / "store"
    cli = make_cli(store, ctx)
    base.make(cli)
    remote = f"{registry.host}/user/image"
    timeout = 1500

    # step 3 of the notes: build, with every step and its result
    # (as the notes write it: the Dockerfile as the argument, its directory the context)
    out = cli("build", "Dockerfile", "-t", "user/image", "-t", remote, timeout=timeout).stdout
    steps = _steps(out)
    instructions = base.dockerfile.splitlines()
    assert list(steps) == instructions, out
    assert set(steps.values()) <= {"base", "built", "cached", "config"}
    assert "Successfully tagged user/image:latest" in out
    assert f"Successfully tagged {remote}:latest" in out

    # `docker build .`: every step and its result, now all from the cache
    again = _steps(cli("build", ".").stdout)
    assert list(again) == instructions
    assert set(again.values()) == {"base", "cached", "config"}

    # run it: it answers HTTP
    assert _serve(store, ctx, "user/image", base.port_env, "/" + app_file[2]) == app_file[3]

    # history: one row per instruction (after the base's own rows), each with a size
    history = cli("history", "--no-trunc", "user/image").stdout.splitlines()
    column = history[0].index("CREATED BY")
    for instruction in instructions[1:]:
        if instruction.startswith("ENTRYPOINT"):
            shell = json.dumps(instruction.removeprefix("ENTRYPOINT "))
            rows = [r for r in history if r[column:].startswith("ENTRYPOINT") and shell in r]
        else:
            rows = [r for r in history if r[column:] == instruction]
        assert len(rows) == 1, (instruction, history)
        size = rows[0].split()[1:3]
        assert size[1] in ("B", "KiB", "MiB", "GiB"), rows[0]
        if instruction.startswith(("RUN", "COPY")):
            assert rows[0].split()[0] != "<config>" and float(size[0]) > 0, rows[0]
    assert len(history) - 1 - (len(instructions) - 1) >= 1  # the base's own rows

    # export by that name, checked by a tool we did not write
    cli("export", "user/image", "-o", str(work / "image.tar"), "--format", "oci-archive")
    inspected = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{work / 'image.tar'}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(json.loads(inspected.stdout)["Layers"]) == len(
        json.loads(cli("inspect", "user/image").stdout)["layers"]
    )

    # push (the notes' `docker push user_name/image_name`, to a local registry), pull back
    pushed = cli("push", remote).stdout
    assert pushed.startswith(f"{remote}:latest: sha256:"), pushed
    fresh = make_cli(work / "fresh-store", work)
    fresh("pull", remote)
    mine = json.loads(cli("inspect", "user/image").stdout)
    theirs = json.loads(fresh("inspect", remote).stdout)
    assert theirs["manifest"] == mine["manifest"]
    assert theirs["layers"] == mine["layers"]

    # one more instruction: only that step is built
    (ctx / "Dockerfile").write_text(base.dockerfile + "RUN echo more > /srv-more.txt\n")
    report = work / "more.json"
    out = cli("build", "-t", "user/image", ".", "--json-report", str(report)).stdout
    assert _built(report) == ["RUN echo more > /srv-more.txt"]
    steps = _steps(out)
    assert steps["RUN echo more > /srv-more.txt"] == "built"
    assert [s for s in steps.values() if s == "built"] == ["built"]

    # a failing step, then fixed: the steps before it come from the cache
    failing = base.dockerfile.replace("COPY .", "RUN test -e /srv/ready\nCOPY .")
    (ctx / "Dockerfile").write_text(failing)
    proc = cli("build", "-t", "user/image", ".", check=False)
    assert proc.returncode == 1
    assert _steps(proc.stdout)["RUN test -e /srv/ready"] == "failed"
    assert _steps(proc.stdout)["COPY . opt/source-code"] == "skipped"
    assert "RUN test -e /srv/ready" in proc.stderr and "failed" in proc.stderr
    fixed = failing.replace("RUN test -e /srv/ready", "RUN touch /srv/ready && test -e /srv/ready")
    (ctx / "Dockerfile").write_text(fixed)
    report = work / "fixed.json"
    cli("build", "-t", "user/image", ".", "--json-report", str(report))
    assert _built(report) == [
        "RUN touch /srv/ready && test -e /srv/ready",
        "COPY . opt/source-code",
    ]


def _busybox(busybox_tar: Path) -> Base:
    return Base(
        "busybox",
        BUSYBOX_DOCKERFILE,
        "PORT",
        lambda cli: cli("import", str(busybox_tar), "--tag", "busybox:latest") and None,
    )


def test_notes_on_busybox(busybox_tar: Path, registry: Registry, tmp_path: Path) -> None:
    page = "<h1>hello from user/image</h1>\n"
    notes_flow(_busybox(busybox_tar), tmp_path, registry, ("index.html", page, "", page))


def test_notes_on_debian(registry: Registry, tmp_path: Path) -> None:
    base = Base(
        "debian",
        DEBIAN_DOCKERFILE,
        "FLASK_RUN_PORT",
        lambda cli: cli("bootstrap", "debian:bookworm", timeout=900) and None,
    )
    notes_flow(base, tmp_path, registry, ("app.py", FLASK_APP, "", "hello from user/image\n"))


SAME_STEPS_FLEET = """\
image "steps" {
  from = "busybox:latest"
  run { command = "mkdir -p /srv && echo python3 > /srv/apt.txt" }
  run { command = "echo flask > /srv/pip.txt" }
  run { command = "echo flask-mysql >> /srv/pip.txt" }
  copy {
    src     = "."
    dest    = "opt/source-code"
    context = "../ctx"
  }
}

app "same" {
  from       = image.steps
  env        = { PORT = "5000" }
  entrypoint = "httpd -f -p 127.0.0.1:$PORT -h /opt/source-code"
}
"""


def test_an_app_with_the_same_steps_shares_every_layer(busybox_tar: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(BUSYBOX_DOCKERFILE)
    (ctx / ".dockerignore").write_text("Dockerfile\n")
    (ctx / "index.html").write_text("hi\n")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "fleet.hcl").write_text(SAME_STEPS_FLEET)
    store = tmp_path / "store"
    cli = make_cli(store, tmp_path)
    cli("import", str(busybox_tar), "--tag", "busybox:latest")
    cli("build", "-t", "user/image", "./ctx")
    layers_before = sorted(p.name for p in (store / "layers").iterdir())
    report = tmp_path / "fleet.json"
    cli("build-all", "--json-report", str(report))
    assert _built(report) == []  # every layer of the app came from the context build
    assert sorted(p.name for p in (store / "layers").iterdir()) == layers_before
    assert _layers(store, cli, "same") == _layers(store, cli, "user/image")
    # both names answer; the configs agree on what runs
    same = json.loads(cli("inspect", "same").stdout)["config"]["config"]
    image = json.loads(cli("inspect", "user/image").stdout)["config"]["config"]
    assert same["Entrypoint"] == image["Entrypoint"]
    # `pipeline build same` still means the app (a name), `./ctx` the context
    assert "app.same" in cli("build", "same").stdout


def test_stdin_build_args_target_no_cache_and_outputs(busybox_tar: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello\n")
    cli = make_cli(tmp_path / "store", tmp_path)
    cli("import", str(busybox_tar), "--tag", "busybox:latest")
    dockerfile = (
        "FROM busybox:latest AS base\nARG WHO=nobody\nRUN echo $WHO > /who\n"
        "FROM base AS final\nCOPY hello.txt /hello.txt\nFROM final AS unused\nRUN false\n"
    )
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pipeline", "build", "-f", "-", "--build-arg", "WHO=me"),
            *("--target", "final", "-t", "multi:1", "-o", "type=local,dest=out", "./ctx"),
        ],
        input=dockerfile,
        cwd=tmp_path,
        env=dict(os.environ, PIPELINE_STORE=str(tmp_path / "store")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "who").read_text() == "me\n"
    assert (tmp_path / "out" / "hello.txt").read_text() == "hello\n"
    assert "RUN false" not in proc.stdout  # a stage the target does not need is not listed
    assert "Successfully tagged multi:1" in proc.stdout
    report = tmp_path / "again.json"
    (ctx / "Dockerfile").write_text(dockerfile)
    cli("build", "--target", "final", "--no-cache", "./ctx", "--json-report", str(report))
    assert _built(report) == ["RUN echo $WHO > /who", "COPY hello.txt /hello.txt"]
    digest = cli("build", "-q", "--target", "final", "--build-arg", "WHO=me", "./ctx").stdout
    assert digest.strip() == json.loads(cli("inspect", "multi:1").stdout)["manifest"]
