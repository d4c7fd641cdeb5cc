"""``--watch``: wait for a change to a target's inputs, rebuild, and (for ``run``)
restart the running container on a new image. The one home of ``watchfiles``
(inotify on Linux).

What is watched (:func:`inputs_of`): the specs directory and the directory of every
Dockerfile the target's images come from, without their subdirectories, and every COPY
context the target's graph reads, with them. A change to a spec file (``*.hcl``, the
lock file, a Dockerfile, an ignore file) reloads the specs; a change anywhere else only
re-hashes the contexts, on the fleet already loaded (the store stays open between
builds).

Contracts: a build that fails (a spec error, a failed step) is reported by the caller
and the watch goes on with the inputs it had; events that arrive while a build runs
are kept and start the next build at once. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.fs.context import IGNORE_FILES
from pipeline.graph import BuildGraph
from pipeline.model import Copy, Fleet

# a change is yielded once nothing else changed for this long (ms): editors write a
# file in several steps, but a developer's edit is one burst
STEP_MS = 10
READY_TIMEOUT_MS = 100


@dataclass(frozen=True)
class Inputs:
    """What to watch: ``flat`` directories (their own entries only) and ``trees``
    (recursively)."""

    flat: tuple[Path, ...]
    trees: tuple[Path, ...]

    def is_spec_change(self, path: Path) -> bool:
        """Whether a change to ``path`` means the specs must be loaded again: it is
        directly inside a watched flat directory (spec files, the lock file,
        Dockerfiles; a context's own files there too, which costs a reload only), or
        it is an ignore file, which the loader reads."""
        return path.parent in self.flat or path.name in IGNORE_FILES


def inputs_of(fleet: Fleet, graph: BuildGraph, specs: Path | None) -> Inputs:
    """The inputs of ``graph``'s images: see the module docstring. Pure."""
    flat: set[Path] = {Path(_abs(specs))} if specs is not None else set()
    trees: set[Path] = set()
    for image_id in graph.images:
        image = fleet.images.get(image_id)
        if image is None:
            continue
        if image.loc is not None and image.loc.file:
            flat.add(Path(_abs(Path(image.loc.file).parent)))
        for step in image.steps:
            if isinstance(step, Copy) and step.from_image is None and step.context:
                trees.add(Path(_abs(Path(step.context))))
    return Inputs(tuple(sorted(flat)), tuple(sorted(trees)))


def _abs(path: Path) -> str:
    import os

    return os.path.abspath(path)


class Watcher:
    """Watches :class:`Inputs` on background threads; :meth:`changes` blocks until
    something changed. Use as a context manager (the threads stop on exit)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[set[Path]] = queue.Queue()
        self._inputs: Inputs | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt()

    def watch(self, inputs: Inputs) -> None:
        """Watch ``inputs`` from now on (no change when they are the ones watched).
        Returns once the watches are in place, so an edit made after it is seen."""
        if inputs == self._inputs:
            return
        self._halt()
        self._stop = threading.Event()
        self._inputs = inputs
        groups = [(inputs.flat, False), (inputs.trees, True)]
        ready = []
        for paths, recursive in groups:
            existing = tuple(p for p in paths if p.is_dir())
            if not existing:
                continue
            up = threading.Event()
            ready.append(up)
            thread = threading.Thread(
                target=self._run,
                args=(existing, recursive, self._stop, up),
                name="pipeline-watch",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        for up in ready:
            up.wait(5)

    def _run(
        self,
        paths: tuple[Path, ...],
        recursive: bool,
        stop: threading.Event,
        ready: threading.Event,
    ) -> None:
        import watchfiles

        with contextlib.suppress(Exception):  # a vanished directory ends this watch only
            for batch in watchfiles.watch(
                *paths,
                recursive=recursive,
                step=STEP_MS,
                debounce=1000,
                rust_timeout=READY_TIMEOUT_MS,
                yield_on_timeout=True,
                stop_event=stop,
                raise_interrupt=False,
            ):
                ready.set()  # the first (timeout) yield: the watches are in place
                if batch:
                    self._queue.put({Path(p) for _, p in batch})
        ready.set()

    def changes(self, poll: float = 0.5) -> set[Path]:
        """Block until a watched path changed; the changed paths (every change that
        arrived so far, merged). Interruptible (Ctrl-C) between polls."""
        while True:
            try:
                found = self._queue.get(timeout=poll)
                break
            except queue.Empty:
                continue
        for more in _drain(self._queue):
            found |= more
        return found

    def _halt(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        self._threads = []
        self._inputs = None


def _drain(q: queue.Queue[set[Path]]) -> Iterator[set[Path]]:
    while True:
        try:
            yield q.get_nowait()
        except queue.Empty:
            return


def spec_changed(inputs: Inputs, paths: Iterable[Path]) -> bool:
    return any(inputs.is_spec_change(p) for p in paths)


class Restarter:
    """``run --watch``'s container: ``run(on_start)`` (a blocking sandbox run that
    hands its process to ``on_start``) on a thread, stopped with SIGTERM (SIGKILL after
    ``grace`` seconds) and started again on a new image."""

    def __init__(
        self, run: Callable[[Callable[[subprocess.Popen[bytes]], None]], int], grace: float = 5.0
    ) -> None:
        self._run = run
        self.grace = grace
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self.codes: list[int] = []  # exit statuses of the runs that ended

    def start(self) -> None:
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._body, name="pipeline-run", daemon=True)
        self._thread.start()
        self._started.wait(30)

    def _body(self) -> None:
        def started(proc: subprocess.Popen[bytes]) -> None:
            self._proc = proc
            self._started.set()

        try:
            self.codes.append(self._run(started))
        finally:
            self._proc = None
            self._started.set()

    def stop(self) -> None:
        """Stop the running container (if any) and wait until it is cleaned up."""
        thread, proc = self._thread, self._proc
        if thread is None:
            return
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
            thread.join(self.grace)
            if thread.is_alive() and proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
        thread.join()
        self._thread = None

    def restart(self) -> None:
        self.stop()
        self.start()
