"""Stopping a build: Ctrl-C (from a real terminal, a process-group SIGINT, or
`timeout -s INT`) and SIGTERM end a build whose step would run for minutes within a few
seconds, with exit 130/143, no process or staging left, and a rerun that starts from
what finished. Real sandbox, real busybox base."""

from __future__ import annotations

import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Cli

pytestmark = [pytest.mark.slow, pytest.mark.root]

# The second step waits for /gate/go (a cache mount, so the gate is no part of its key)
# for at most 600 s: the first build is stopped while it waits; the rerun opens the gate.
SPEC = """
image "slow" {
  from = "busybox:latest"
  run { command = "echo first > /first" }
  run {
    command = <<-EOT
      i=0
      while [ ! -e /gate/go ] && [ $i -lt 6000 ]; do sleep 0.1; i=$((i+1)); done
      echo second > /second
    EOT
    mount {
      type   = "cache"
      target = "/gate"
      id     = "gate"
    }
  }
  tags = ["slow:1"]
}
"""


@pytest.fixture
def fleet(tmp_path: Path, busybox_store: Cli) -> Path:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "fleet.hcl").write_text(SPEC)
    return specs


def _env(store: Path) -> dict[str, str]:
    if not store.exists():  # a store given by PIPELINE_STORE must exist (or --init)
        store.mkdir(mode=0o700, parents=True)
    return dict(os.environ, PIPELINE_STORE=str(store))


def _descendants(root: int) -> set[tuple[int, str]]:
    """(pid, start time) of every process below ``root``."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        starts[pid] = fields[19]
    out: set[tuple[int, str]] = set()
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        out.add((pid, starts.get(pid, "")))
        stack.extend(children.get(pid, ()))
    return out


def _running_sandbox(root: int) -> bool:
    for pid, _ in _descendants(root):
        try:
            if b"pipeline.sandbox.init" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def _alive(procs: set[tuple[int, str]]) -> set[tuple[int, str]]:
    left = set()
    for pid, start in procs:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[19] == start:
            left.add((pid, start))
    return left


def _assert_clean(store: Path, seen: set[tuple[int, str]]) -> None:
    """Every process the build had started is gone; no staging dir, no mount is left."""
    deadline = time.monotonic() + 3
    while _alive(seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(seen) == set()
    leftovers = [p.name for p in (store / "tmp").iterdir()]
    assert leftovers == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(store) not in mounts


def _wait_for_step(store: Path, root: int, timeout: float = 60) -> set[tuple[int, str]]:
    """Until the first step is in the store and the slow second one is running; the
    processes below ``root`` at that moment."""
    deadline = time.monotonic() + timeout
    while not (_cached_keys(store) == 1 and _running_sandbox(root)):
        assert time.monotonic() < deadline, "the slow step never started"
        time.sleep(0.05)
    time.sleep(0.3)  # let the step's own processes start
    return _descendants(root)


def _cached_keys(store: Path) -> int:
    with sqlite3.connect(store / "index.db", timeout=10) as db:
        return int(db.execute("SELECT count(*) FROM cache").fetchone()[0])


def _rerun_builds_only_the_stopped_step(cli: Cli, store: Path) -> None:
    gate = store / "cache" / "gate"
    gate.mkdir(parents=True, exist_ok=True)
    (gate / "go").write_text("")
    out = cli("build-all", "--specs", "specs", "--progress", "plain").stdout
    assert "1 built, 1 cached" in out, out


def test_timeout_sigint_stops_within_seconds(
    fleet: Path, busybox_store: Cli, store_path: Path
) -> None:
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            "timeout",
            "--preserve-status",
            "-s",
            "INT",
            "3",
            sys.executable,
            "-m",
            "pipeline",
            "build-all",
            "--specs",
            str(fleet),
            "--progress",
            "plain",
        ],
        cwd=fleet.parent,
        env=_env(store_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = _wait_for_step(store_path, proc.pid)
    _, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 130, err
    assert elapsed < 5, elapsed
    assert "stopping..." in err
    assert "Traceback" not in err
    _assert_clean(store_path, seen)
    _rerun_builds_only_the_stopped_step(busybox_store, store_path)


def test_ctrl_c_on_a_terminal(fleet: Path, busybox_store: Cli, store_path: Path) -> None:
    pid, master = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal
        os.chdir(fleet.parent)
        os.execve(
            sys.executable,
            [sys.executable, "-m", "pipeline", "build-all", "--specs", str(fleet)],
            _env(store_path),
        )
    output = b""
    try:
        seen = _wait_for_step(store_path, pid)
        os.write(master, b"\x03")  # the terminal turns this into SIGINT for the job
        pressed = time.monotonic()
        while True:
            ready, _, _ = select.select([master], [], [], 10)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
        elapsed = time.monotonic() - pressed
    finally:
        os.close(master)
    assert os.waitstatus_to_exitcode(status) == 130, output.decode(errors="replace")
    assert elapsed < 5, elapsed
    assert b"stopping..." in output
    assert b"Traceback" not in output
    _assert_clean(store_path, seen)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_process_group(
    fleet: Path, busybox_store: Cli, store_path: Path, signum: int, code: int
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "build-all",
            "--specs",
            str(fleet),
            "--progress",
            "plain",
        ],
        cwd=fleet.parent,
        env=_env(store_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        seen = _wait_for_step(store_path, proc.pid)
        os.killpg(proc.pid, signum)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert elapsed < 2.5, elapsed
    assert "Traceback" not in err
    _assert_clean(store_path, seen)
    _rerun_builds_only_the_stopped_step(busybox_store, store_path)
