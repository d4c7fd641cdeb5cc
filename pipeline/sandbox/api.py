"""What the executor is given to run steps: the values that describe a step run and
the :class:`StepRunner` protocol. Pure; ``pipeline.sandbox.linux`` implements it, and
unit tests of the scheduler give the executor a fake."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class BindMount:
    """A host path bind-mounted at ``target`` (absolute, inside the rootfs) during a step.

    Cache dirs are ``readonly=False``: what the step writes there stays in ``source``.
    Secret files and CA bundles are read-only. Neither ever appears in the layer.
    """

    source: Path
    target: str
    readonly: bool = True


@dataclass(frozen=True)
class RunSpec:
    """What to run and how. ``argv`` is final: shell form is ``("/bin/sh", "-c", cmd)``.
    ``tty`` (``run_interactive`` only): the command gets a terminal of the sandbox's own
    devpts on fds 0-2, relayed to the caller's (``docker run -t``)."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    workdir: str = "/"
    user: str = ""
    network: str = "default"
    binds: tuple[BindMount, ...] = ()
    hostname: str = "pipeline"
    resolv: bool = True
    tty: bool = False


@dataclass(frozen=True)
class RunResult:
    """How a step ended: its exit code (128+N when killed by signal N), the last lines of
    its merged stdout/stderr, and its wall time including sandbox setup."""

    exit_code: int
    output_tail: tuple[str, ...]
    seconds: float


class StepRunner(Protocol):
    """Runs RUN steps for the executor. Implementations are thread-safe: the executor
    calls ``run_step`` from several worker threads at once."""

    def check_host(self) -> None:
        """Raise SandboxError with one line unless steps can run on this host."""
        ...

    def run_step(
        self,
        lowerdirs: Sequence[Path],
        upper: Path,
        work: Path,
        spec: RunSpec,
        on_output: Callable[[str], None] | None = None,
    ) -> RunResult:
        """Run ``spec`` on an overlay of ``lowerdirs`` (top-most first); afterwards
        ``upper`` holds exactly the step's changes and ``work`` is empty again. A
        failing step is a result (its exit code), not an exception; SandboxError means
        the step could not be set up."""
        ...

    def stop(self) -> int:
        """Kill every running step (its whole process tree and mounts) and refuse new
        ones; returns how many were killed. Idempotent; safe from any thread."""
        ...
