"""A child-process launcher for hostile-input tests: runs ``python -m pipeline ...``
(or any argv) and measures its wall time and peak resident memory (``ru_maxrss`` of
that child, from ``wait4``), under a safety cap on address space and time so that a
regression cannot take the machine down with it."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True)
class Outcome:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss: int  # bytes
    timed_out: bool

    def describe(self) -> str:
        return (
            f"{' '.join(self.argv)[:200]}\nexit {self.returncode} after {self.seconds:.2f} s, "
            f"peak RSS {self.max_rss / MiB:.0f} MiB{' (timed out)' if self.timed_out else ''}\n"
            f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}"
        )


def run_bounded(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    address_space: int = 8 * GiB,
    preexec: object = None,
) -> Outcome:
    """Run ``argv``; kill it after ``timeout`` seconds. ``RLIMIT_AS`` is set to
    ``address_space`` in the child (a safety net; assertions use ``max_rss``)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if callable(preexec):
            preexec()

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=limit,
        )
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > timeout:
                proc.kill()
                timed_out = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
        out.seek(0)
        err.seek(0)
        return Outcome(
            tuple(argv),
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            seconds,
            usage.ru_maxrss * 1024,
            timed_out,
        )


def pipeline_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


def base_env(store: Path, **extra: str) -> dict[str, str]:
    if not store.exists():  # a store given by PIPELINE_STORE must exist (or --init)
        store.mkdir(mode=0o700, parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PIPELINE_STORE=str(store), **extra)
    return env
