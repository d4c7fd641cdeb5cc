"""A private dockerd for tests: its own socket (in a short path: unix sockets are
limited to 107 bytes), data root and exec root, no network setup; started and stopped
by the test that uses it, its children killed by pid."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


class Dockerd:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.short = Path(tempfile.mkdtemp(prefix="pbd-", dir="/tmp"))
        self.sock = self.short / "d.sock"
        self.host = f"unix://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.children: set[int] = set()
        self.cli = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"

    def env(self) -> dict[str, str]:
        env = dict(os.environ, DOCKER_HOST=self.host, DOCKER_BUILDKIT="1")
        env.pop("DOCKER_CONFIG", None)
        return env

    def docker(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run(
            [self.cli, *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {proc.stderr[-3000:]}")
        return proc.stdout

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        log = (self.work / "dockerd.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--host",
                self.host,
                "--data-root",
                str(self.work / "data"),
                "--exec-root",
                str(self.short / "exec"),
                "--pidfile",
                str(self.work / "dockerd.pid"),
                "--storage-driver",
                "overlay2",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                self.docker("version", timeout=10)
                break
            except (AssertionError, subprocess.TimeoutExpired):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.work / "dockerd.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"dockerd did not start:\n{tail}") from None
                time.sleep(0.2)
        self.children = _children(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            self.children |= _children(self.proc.pid)
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        for pid in sorted(self.children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.children = set()
        for where in (self.work, self.short):
            for point in _mounts_under(where):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        shutil.rmtree(self.short, ignore_errors=True)


@contextlib.contextmanager
def private_dockerd(work: Path) -> Iterator[Dockerd]:
    d = Dockerd(work)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def available() -> str | None:
    """Why a private dockerd cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("dockerd", "umoci", "skopeo"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None
