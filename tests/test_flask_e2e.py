"""The user's own example, for real: a Debian base made with mmdebstrap, apt + pip layers,
Flask services that answer HTTP from `pipeline run` and from runc after `umoci unpack`.

Slow (a Debian bootstrap and real apt/pip downloads: a few minutes); CI runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, Cli, make_cli

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, deadline: float = 30) -> str:
    end = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


def serve(store: Path, work: Path, app: str, stop: signal.Signals) -> str:
    """`pipeline run -p PORT:5000 APP`, GET / through the forwarded port, then stop it
    with ``stop`` and check it exits. Returns the body."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "-p", f"{port}:5000", app],
        cwd=work,
        env=dict(os.environ, PIPELINE_STORE=str(store)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        return get(f"http://127.0.0.1:{port}/")
    finally:
        proc.send_signal(stop)
        assert proc.wait(30) in (0, 128 + stop)  # stopped by the signal, within 30 s


def built(report: dict) -> list[tuple[str, list[str]]]:
    return [(n["label"], n["apps"]) for n in report["nodes"] if n["outcome"] == "built"]


def build_all(cli: Cli, work: Path) -> dict:
    out = work / f"report-{time.monotonic_ns()}.json"
    cli("build-all", "--progress", "plain", "--json-report", str(out), timeout=1500)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, Path, Path]:
    """A copy of specs/ (so the test can edit it) and a store with debian:bookworm."""
    work = tmp_path_factory.mktemp("flask")
    shutil.copytree(REPO / "specs", work / "specs")
    store = work / "store"
    cli = make_cli(store, work)
    cli("bootstrap", "debian:bookworm", timeout=900)
    return cli, work, store


def test_example_fleet_builds_runs_and_rebuilds_one_layer(fleet: tuple[Cli, Path, Path]) -> None:
    cli, work, store = fleet
    cold = build_all(cli, work)
    assert cold["totals"]["failed"] == 0
    apps = set(cold["images"])
    assert {"app.web", "app.orders", "app.users", "app.legacy", "app.health-eu"} <= apps
    # the apt layer (python) is built once for the whole fleet
    python = [label for label, users in built(cold) if "python3-pip" in label]
    assert len(python) == 1
    # the flask + flask-mysql set is one node shared by web, orders and users
    mysql = [users for label, users in built(cold) if "flask-mysql==1.5.2" in label]
    assert mysql == [["app.orders", "app.users", "app.web"]]
    # each wheel was downloaded once for the fleet
    wheels = sorted(p.name for p in (store / "cache" / "pip" / "wheels").iterdir())
    assert len([w for w in wheels if w.startswith("flask-3.0.3")]) == 1

    assert serve(store, work, "web", signal.SIGTERM) == "hello from web\n"
    assert str(store) not in Path("/proc/self/mountinfo").read_text()
    assert list((store / "tmp").iterdir()) == []

    app_py = work / "specs" / "services" / "web" / "app.py"
    app_py.write_text(app_py.read_text().replace("hello from", "hi again from"))
    after = build_all(cli, work)
    assert built(after) == [("COPY . /opt/source-code/", ["app.web"])]
    assert serve(store, work, "web", signal.SIGINT) == "hi again from web\n"

    history = cli("history", "--no-trunc", "web").stdout
    lines = history.splitlines()
    story = [
        ("COPY . /opt/source-code/", "-"),
        ("pip install --no-index --find-links /root/.cache/pip/wheels flask", "orders, users"),
        ("python3-pip", "api, cart, catalog, +7"),
    ]
    for needle, shared in story:
        line = next(line for line in lines if needle in line)
        assert shared in line, line
    assert "ENTRYPOINT" in history
    assert "pipeline bootstrap debian:bookworm" in history


def test_exported_image_runs_under_runc(fleet: tuple[Cli, Path, Path], tmp_path: Path) -> None:
    cli, work, _ = fleet
    build_all(cli, work)
    layout = tmp_path / "orders"
    cli("export", "orders", "-o", str(layout))
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:1.0", str(bundle)],
        check=True,
        capture_output=True,
    )
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    port = free_port()
    config["process"]["terminal"] = False
    args = config["process"]["args"]
    assert args[:2] == ["/bin/sh", "-c"] and "flask run" in args[2]
    config["process"]["args"] = [*args[:2], args[2].replace("--port=5000", f"--port={port}")]
    # share the host's network so the test can reach the server
    config["linux"]["namespaces"] = [
        ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"
    ]
    config_path.write_text(json.dumps(config))
    name = f"pipeline-test-{os.getpid()}"
    proc = subprocess.Popen(
        ["runc", "run", "--bundle", str(bundle), name],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert get(f"http://127.0.0.1:{port}/") == "hello from orders\n"
    finally:
        subprocess.run(["runc", "kill", name, "KILL"], capture_output=True)
        proc.wait(30)
        subprocess.run(["runc", "delete", "--force", name], capture_output=True)


def test_example_fleet_is_reproducible(fleet: tuple[Cli, Path, Path]) -> None:
    """`pipeline verify` rebuilds every layer in a scratch store from the same Debian base
    (apt, pip and all): the same digests, layer by layer."""
    cli, work, store = fleet
    build_all(cli, work)
    proc = cli("verify", timeout=1500)
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("11 of 11 images reproducible; 17 layers rebuilt in"), proc.stdout
    assert "app.catalog: ok (4 layers reproduced)" in lines
    assert list((store / "tmp").iterdir()) == []
