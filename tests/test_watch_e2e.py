"""``build APP --watch`` and ``run APP --watch`` for real: the real CLI in a child
process, the real sandbox and busybox base, real inotify. An edit to a source file
commits a new image; an edit to a spec file reloads the specs; a new image restarts
the running container. Needs root (overlayfs, namespaces)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.store import Store

pytestmark = pytest.mark.slow

SPEC = """
app "web" {
  from       = "busybox:latest"
  source     = "src"
  workdir    = "/srv"
  env        = { MODE = "%s" }
  entrypoint = ["/bin/sh", "/srv/main.sh"]
}

app "other" {
  from   = "busybox:latest"
  source = "other"
}
"""


class Child:
    """A CLI process whose stdout and stderr lines are read on threads."""

    def __init__(self, args: list[str], store: Path, cwd: Path) -> None:
        env = dict(os.environ, PIPELINE_STORE=str(store))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.seen: list[tuple[str, str]] = []
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream: object) -> None:
        assert stream is not None
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put((name, line.rstrip("\n")))

    def expect(self, stream: str, prefix: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                name, line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append((name, line))
            if name == stream and line.startswith(prefix):
                return line
        raise AssertionError(f"no {stream} line starting {prefix!r}; seen: {self.seen}")

    def stop(self, sig: int) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def _fleet(tmp_path: Path, mode: str = "a") -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "other").mkdir(exist_ok=True)
    (tmp_path / "other" / "x.txt").write_text("x\n")
    (tmp_path / "src" / "main.sh").write_text('echo "web up: $(cat /srv/v.txt)"\nexec sleep 300\n')
    (tmp_path / "src" / "v.txt").write_text("v1\n")
    (tmp_path / "fleet.hcl").write_text(SPEC % mode)
    return tmp_path


def _edit(path: Path, text: str) -> None:
    path.write_text(text)


def test_build_watch_commits_a_new_image_per_edit(busybox_store, tmp_path: Path) -> None:
    store_path = tmp_path / "store"
    specs = _fleet(tmp_path)
    child = Child(["build", "web", "--specs", str(specs), "--watch"], store_path, tmp_path)
    try:
        child.expect("err", "watching")
        first = Store(store_path).resolve("app.web")
        assert first is not None
        _edit(specs / "src" / "v.txt", "v2\n")
        line = child.expect("out", "watch: app.web sha256:")
        second = line.split()[2]
        assert second != first
        assert Store(store_path).resolve("app.web") == second  # committed and named
        # a spec edit reloads the specs: the new env is in the new image's config
        _edit(specs / "fleet.hcl", SPEC % "b")
        third = child.expect("out", "watch: app.web sha256:").split()[2]
        assert third not in (first, second)
        config = Store(store_path).get_json(Store(store_path).get_json(third)["config"]["digest"])
        assert "MODE=b" in config["config"]["Env"]
        # an edit to another app's source is not an input of web: nothing is rebuilt
        _edit(specs / "other" / "x.txt", "y\n")
        time.sleep(1.0)
        assert all("app.web" not in line for _, line in list(child.lines.queue))
    finally:
        code = child.stop(signal.SIGINT)
    assert code == 130
    assert not list((store_path / "tmp").glob("*.lock"))


def test_run_watch_restarts_the_container_on_a_new_image(busybox_store, tmp_path: Path) -> None:
    store_path = tmp_path / "store"
    specs = _fleet(tmp_path)
    child = Child(["run", "web", "--specs", str(specs), "--watch"], store_path, tmp_path)
    try:
        child.expect("out", "web up: v1")
        child.expect("err", "watching")
        _edit(specs / "src" / "v.txt", "v2\n")
        child.expect("err", "watch: restarting app.web on sha256:")
        child.expect("out", "web up: v2")
    finally:
        code = child.stop(signal.SIGTERM)
    assert code == 143
    left = subprocess.run(["pgrep", "-f", "sleep 300"], capture_output=True, text=True)
    assert left.stdout.strip() == ""  # the containers were stopped, not orphaned
    assert not list((store_path / "tmp").iterdir())
