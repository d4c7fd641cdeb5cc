"""Helpers shared by the benchmark suite and the peer comparison: running the real
``pipeline`` CLI in a child process, measuring disk use and describing the machine."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class CommandFailed(RuntimeError):
    """A measured command exited non-zero; carries the command and its output tail."""

    def __init__(self, argv: Sequence[str], code: int, output: str) -> None:
        self.argv = list(argv)
        self.code = code
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-25:])
        super().__init__(f"{' '.join(self.argv)}: exit {code}\n{tail}")


@dataclass(frozen=True)
class Run:
    """One finished child process: wall seconds, peak RSS of the child (bytes),
    CPU seconds (user + system, children of the child included where reaped)."""

    argv: tuple[str, ...]
    seconds: float
    peak_rss: int
    cpu_seconds: float
    stdout: str
    stderr: str
    extra: dict[str, Any] = field(default_factory=dict)


def run_with_rusage(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 3600,
    check: bool = True,
) -> Run:
    """Run ``argv``; return its wall time and its own rusage, reaped with ``os.wait4``
    so the peak RSS (``ru_maxrss``) and CPU time are that child's alone (with its
    reaped descendants), not a sum over everything this process ran. Output goes to
    temp files, not pipes, so a chatty child cannot block."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=out, stderr=err)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, stdout + stderr)
    return Run(
        tuple(argv),
        seconds,
        usage.ru_maxrss * 1024,
        usage.ru_utime + usage.ru_stime,
        stdout,
        stderr,
    )


def pipeline_argv(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "--init", "--store", str(store), *args]


def pipeline_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PIPELINE_STORE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def pipeline(store: Path, *args: str, cwd: Path | None = None, timeout: float = 3600) -> Run:
    """``python -m pipeline --store STORE ARGS...``, raising CommandFailed on failure."""
    return run_with_rusage(
        pipeline_argv(store, *args), cwd=cwd, env=pipeline_env(), timeout=timeout
    )


def build_all(
    store: Path, specs: Path, report: Path, jobs: int | None = None, timeout: float = 3600
) -> tuple[Run, dict[str, Any]]:
    """One quiet ``build-all`` with a JSON report; returns the run and the report. The
    command line is ``pipeline bench``'s own (``pipeline.build.bench.build_all_argv``),
    so the suite and ``pipeline bench`` measure the same thing."""
    from pipeline.build.bench import build_all_argv

    argv = build_all_argv(store, specs, report, jobs)
    run = run_with_rusage(argv, cwd=specs.parent, env=pipeline_env(), timeout=timeout)
    return run, json.loads(report.read_text())


def tree_bytes(root: Path) -> dict[str, int]:
    """Disk use of a tree: ``apparent`` (sum of st_size, directories included, each
    hard-linked inode once, like ``du -sb``) and ``allocated`` (st_blocks * 512, like
    ``du -sB1``). Missing trees count 0; files vanishing during the walk are skipped."""
    seen: set[tuple[int, int]] = set()
    apparent = allocated = 0
    if not os.path.lexists(root):
        return {"apparent": 0, "allocated": 0}
    stack = [str(root)]
    while stack:
        path = stack.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        apparent += st.st_size
        allocated += st.st_blocks * 512
        if os.path.isdir(path) and not os.path.islink(path):
            try:
                with os.scandir(path) as it:
                    stack.extend(e.path for e in it)
            except OSError:
                continue
    return {"apparent": apparent, "allocated": allocated}


def _first_line(argv: Sequence[str]) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def machine_info(tools: dict[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """nproc, memory, kernel, CPU model, Python and the given tools' version lines."""
    mem = 0
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    fs = _first_line(["stat", "-f", "-c", "%T", "/tmp"])
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "memory_bytes": mem,
        "cpu": cpu,
        "kernel": platform.release(),
        "os": _os_release(),
        "python": platform.python_version(),
        "tmp_filesystem": fs,
        "tools": {},
    }
    for name, argv in (tools or {}).items():
        info["tools"][name] = _first_line(argv) if shutil.which(argv[0]) else "not installed"
    return info


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def self_peak_rss() -> int:
    """Peak RSS of this process so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
