"""The sandbox: the one module that mounts and spawns. Runs RUN steps and ``pipeline run``.

The boundary
    A step is untrusted code running as root in its namespaces; it gets what a Docker
    container gets, no more. Its pid 1 ``pivot_root``s into the overlay and detaches the
    old root, so no path, cwd, fd or ``/proc/*/root|cwd`` link leads to the host; only
    fds 0-2 reach the step, and run_step's stdin is the rootfs's own ``/dev/null``.
    Capabilities: Docker's default set minus MKNOD (and minus NET_RAW on the host
    network), inheritable and ambient empty; a seccomp filter in the spirit of Docker's
    default profile; Landlock scopes (Linux 6.12+) so the step can neither reach the
    host's abstract unix sockets nor signal its pid 1, which is itself not dumpable and
    keeps only CAP_KILL. The details and the reasons are in :mod:`pipeline.sandbox.confine`
    (capabilities, seccomp, Landlock), :mod:`pipeline.sandbox.rootfs` (/proc, /sys, /dev,
    masked and read-only paths, the pivot) and :mod:`pipeline.sandbox.init` (who holds
    what). The host's environment never reaches the sandbox's processes.

The network
    ``network="none"``: a new net namespace with only ``lo``, brought up. The default is
    the host's network namespace, because there is no bridge and RUN steps download
    (pip, apt, npm) and ``pipeline run`` serves on host ports. That is a decision with a
    cost, written down here: in the host's namespace a step can reach every service
    listening on the host's loopback (a database, a registry, a Docker API on TCP) and
    bind ports on the host. Abstract unix sockets are per network namespace too, and the
    host's (D-Bus, X11, container shims: the path of CVE-2020-15257) would be reachable
    as well; the Landlock scope closes that where the kernel has it (ABI 6), and
    without Landlock they stay reachable. Raw and packet sockets are not available
    (no NET_RAW on the host network), so a step can neither sniff nor forge the host's
    traffic. A step that needs no network should say ``network = "none"``.

What a step sees
    An overlayfs of ``lowerdirs`` (top-most first) with ``upper`` as its upperdir, as
    ``/``; fresh mount, pid, uts, ipc and cgroup namespaces (and a net namespace when
    ``network="none"``); hostname ``spec.hostname``; a fresh ``/proc`` with runc's
    masked and read-only paths; ``/sys`` read-only; a minimal ``/dev`` (its own null,
    zero, full, random, urandom and tty nodes, ``/dev/shm``, a private ``/dev/pts`` and
    the fd/stdin/stdout/stderr/ptmx links); the host's ``/etc/resolv.conf`` and
    ``/etc/hosts`` bind-mounted read-only when ``spec.resolv``; every ``spec.binds``
    entry bind-mounted nosuid and nodev (read-only ones read-only); cwd ``spec.workdir``;
    the uid, gid and supplementary groups ``spec.user`` resolves to in the image's own
    /etc/passwd and /etc/group; exactly ``spec.env`` plus ``PATH`` (:data:`DEFAULT_PATH`)
    and ``HOME`` (from passwd, else ``/``) when those are absent; umask 022; stdin
    ``/dev/null`` (``run_step``) or the caller's (``run_interactive``), or with
    ``spec.tty`` fds 0-2 on a pty of the sandbox's own devpts, its controlling terminal.

What the layer (``upper``) holds afterwards
    Exactly the step's changes in overlayfs upperdir format: new and copied-up files,
    whiteouts (char device 0:0; overlay may hard-link several whiteouts to one inode) and
    opaque dirs (``trusted.overlay.opaque=y``). The overlay is mounted with
    ``redirect_dir=off,metacopy=off,index=off,xino=off`` so a renamed dir is copied, not
    redirected, and no file is a metadata-only copy: the upper is a plain diff, usable as
    a lowerdir anywhere. Overlay's own bookkeeping xattrs (``trusted.overlay.origin``,
    ``impure``, ``nlink``, and ``uuid`` on the upper root) are removed afterwards;
    ``opaque`` is kept. The workdir, when missing, is created owned by the step's user and
    *is* part of the layer, as in Docker.

The placeholder rule
    Mounting needs a mount point. When the image lacks one (``/proc``, ``/dev``, ``/sys``,
    ``/etc/resolv.conf``, a bind target and its parents), the sandbox creates it in the
    merged tree before the step runs; that may also make overlay copy parent dirs up
    (``/etc`` when only ``/etc/resolv.conf`` is missing). Every path that did not exist in
    ``upper`` before that and exists afterwards is a placeholder. After the step, each
    placeholder is deleted from ``upper``, deepest first, only if it is still the very same
    inode with the same type, ctime, mode, owner, size and xattr names (so the step did not
    write, chmod, chown, set an xattr on, or replace it) and, for a dir, it is empty once its
    own placeholder children are gone. Anything the step put there (a file in a copied-up
    ``/etc``, a whiteout, new content in ``/run``) keeps the dir and is part of the layer.
    Mount targets are resolved inside the rootfs (symlinks followed as a process inside
    would see them), so a hostile symlink never points a mount at the host. A target that
    lies inside another bind's source gets its mount point made in that source.

What survives
    Everything is mounted inside the step's own mount namespace, after making ``/``
    recursively private; nothing is ever mounted in the caller's namespace, so there is
    nothing to unmount and nothing can leak. When the step's pid 1 exits, the kernel
    kills what the step left running; when the namespace's last process is gone, its mounts
    go too. ``run_step`` and ``run_interactive`` return (or raise) only once every process
    of the step is gone (see :func:`kill_all` for how). If the calling *thread* dies (e.g.
    the build is SIGKILLed), PR_SET_PDEATHSIG kills the sandbox's stage 1, which kills pid
    1, which takes the whole step with it. ``work`` is left empty. A step that fails is not
    an exception: it returns its exit code and the tail of its output. Only setup problems
    raise :class:`SandboxError`.
"""

from __future__ import annotations

import marshal
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import SandboxError
from pipeline.oci.config import DEFAULT_PATH
from pipeline.sandbox.api import RunResult, RunSpec
from pipeline.sandbox.host import (
    clear_work,
    layout,
    remove_placeholders,
    strip_bookkeeping,
)

OVERLAY_MAX_LOWER = 500  # OVL_MAX_STACK in the kernel
NETWORKS = ("default", "none")
MAX_LINE = 16384  # longer output lines are cut into pieces of this many bytes

# Import the child's module rather than run it as a script, so its cached bytecode is
# used (compiling it on every step costs ~15 ms). Where the package lives travels in the
# environment, not in argv: the step can read /proc/1/cmdline but not /proc/1/environ.
_INIT = (
    "import os, sys; sys.path.insert(0, os.environ['PIPELINE_SANDBOX_PATH']); "
    "from pipeline.sandbox.init import main; main(sys.argv)"
)
_CHILD_ENV = {"PIPELINE_SANDBOX_PATH": str(Path(__file__).resolve().parent.parent.parent)}
if "LD_LIBRARY_PATH" in os.environ:  # some Python builds need it to start at all
    _CHILD_ENV["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
KILL_SIGNAL = signal.SIGRTMIN  # stage 1 answers it by SIGKILLing the step's pid 1
KILL_GRACE = 1.0  # seconds kill_all waits before SIGKILLing a stage 1 that did not exit
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


_host_ok = False
_live: set[_Sandbox] = set()
_live_lock = threading.RLock()  # re-entrant: kill_all may run in a signal handler
_refusing = False


def check_host() -> None:
    """Raise :class:`SandboxError` with a one-line message unless steps can run here.

    Checks root, overlayfs in /proc/filesystems, namespace and chroot support, then runs
    one real sandbox (an empty rootfs in a temp dir) to prove that unsharing and mounting
    are permitted. Succeeds quickly on later calls in the same process.
    """
    global _host_ok
    if _host_ok:
        return
    if not sys.platform.startswith("linux"):
        raise SandboxError(f"sandbox: needs Linux (this is {sys.platform})")
    if os.geteuid() != 0:
        raise SandboxError(
            f"sandbox: needs root for overlayfs mounts and namespaces (euid is {os.geteuid()})"
        )
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError as exc:
        raise SandboxError(f"sandbox: cannot read /proc/filesystems ({exc.strerror})") from None
    if not any(line.split()[-1:] == ["overlay"] for line in filesystems.splitlines()):
        raise SandboxError(
            "sandbox: overlayfs is not available (no 'overlay' in /proc/filesystems; "
            "try `modprobe overlay`)"
        )
    missing = [
        n for n in ("mnt", "pid", "uts", "ipc", "net") if not Path(f"/proc/self/ns/{n}").exists()
    ]
    if missing:
        raise SandboxError(f"sandbox: kernel lacks namespaces: {', '.join(missing)}")
    if not hasattr(os, "pidfd_open"):
        raise SandboxError("sandbox: os.pidfd_open is not available (needs Python 3.9+)")
    with tempfile.TemporaryDirectory(prefix="pipeline-check-") as tmp:
        base = Path(tmp)
        for name in ("lower", "upper", "work"):
            (base / name).mkdir()
        spec = RunSpec(argv=("/pipeline-probe",), env=(), network="none")
        try:
            result = run_step([base / "lower"], base / "upper", base / "work", spec)
        except SandboxError as exc:
            reason = str(exc).removeprefix("sandbox: ")
            raise SandboxError(f"sandbox: check failed: {reason}") from None
        if result.exit_code != 127 or any((base / "upper").iterdir()):
            raise SandboxError(
                f"sandbox: check failed: probe step gave exit code {result.exit_code}: "
                + " / ".join(result.output_tail[-3:])
            )
    _host_ok = True


def kill_all(timeout: float = KILL_GRACE, *, refuse_new: bool = False, owner: object = None) -> int:
    """Stop every sandbox this process is running (e.g. on Ctrl-C of a build); returns
    how many were running.

    Contract: when it returns, every process of every step it counted is gone and no
    process is left in those steps' mount namespaces, so their mounts are released by
    the kernel; each ``run_step`` then returns exit code 137 (or raises
    :class:`SandboxError` if it was still being set up), each ``run_interactive`` 137.
    How: each stage 1 gets :data:`KILL_SIGNAL` and SIGKILLs its pid 1; it can reap pid 1
    only once the kernel has killed and reaped everything else in that pid namespace,
    and it exits right after; this waits for those exits on pidfds (nothing is reaped
    here, so it never races the ``run_step`` threads). A stage 1 still running after
    ``timeout`` seconds is SIGKILLed (PR_SET_PDEATHSIG then takes its pid 1 down) and
    waited for once more as long. Safe from any thread and from a signal handler of the
    main thread; a second call while one runs is harmless. Measured here: four steps
    with daemons left running, 26.6 ms median (52.9 ms max) on a loaded 2-core machine.
    With ``refuse_new`` every later start raises :class:`SandboxError` (also one racing
    with this call) until :func:`accept_new`: what a build's Ctrl-C wants. With
    ``owner``, only the sandboxes ``run_step`` was given that owner for are stopped.
    """
    global _refusing
    with _live_lock:
        _refusing = _refusing or refuse_new
        fds = []
        for box in _live:
            if owner is not None and box.owner is not owner:
                continue
            if box.pidfd >= 0:
                try:
                    fds.append(os.dup(box.pidfd))
                except OSError:
                    continue
    try:
        for fd in fds:
            _send(fd, KILL_SIGNAL)
        left = _wait_exited(fds, timeout)
        for fd in left:
            _send(fd, signal.SIGKILL)
        _wait_exited(left, timeout)
    finally:
        for fd in fds:
            os.close(fd)
    return len(fds)


def _send(pidfd: int, sig: int) -> bool:
    """Signal the process behind ``pidfd``; False when it has exited already."""
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        return False
    return True


def accept_new() -> None:
    """Undo ``kill_all(refuse_new=True)``: sandboxes may start again."""
    global _refusing
    with _live_lock:
        _refusing = False


def _wait_exited(fds: Sequence[int], timeout: float) -> list[int]:
    """Poll pidfds until each process exited or ``timeout`` passed; those still alive."""
    poller = select.poll()
    left = set(fds)
    for fd in fds:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for fd, _events in poller.poll(remaining * 1000):
            poller.unregister(fd)
            left.discard(fd)
    return sorted(left)


def run_step(
    lowerdirs: Sequence[Path],
    upper: Path,
    work: Path,
    spec: RunSpec,
    on_output: Callable[[str], None] | None = None,
    tail_lines: int = 20,
    owner: object = None,
) -> RunResult:
    """Run one step in the sandbox; ``upper`` then holds exactly the step's changes.
    ``owner`` tags the sandbox so ``kill_all(owner=...)`` can stop it alone.

    ``lowerdirs`` are layer dirs, top-most first. ``upper`` and ``work`` are dirs on one
    filesystem; ``work`` must be empty and is empty again afterwards. Stdout and stderr are
    merged; each line (without its newline, undecodable bytes replaced) goes to
    ``on_output`` as it arrives, and the last ``tail_lines`` come back in the result. An
    exception from ``on_output`` (or a KeyboardInterrupt) kills the step and propagates.
    Raises :class:`SandboxError` if the sandbox could not be set up.
    """
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=max(tail_lines, 0))

    def emit(raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        tail.append(line)
        if on_output is not None:
            on_output(line)

    with _Sandbox(lowerdirs, upper, work, spec, owner) as box:
        proc = box.start(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        pending = b""
        while chunk := os.read(fd, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                for i in range(0, max(len(raw), 1), MAX_LINE):
                    emit(raw[i : i + MAX_LINE])
            while len(pending) >= MAX_LINE:
                emit(pending[:MAX_LINE])
                pending = pending[MAX_LINE:]
        if pending:
            emit(pending)
        code = box.finish(tail)
    return RunResult(code, tuple(tail), time.monotonic() - started)


def run_interactive(
    lowerdirs: Sequence[Path],
    upper: Path,
    work: Path,
    spec: RunSpec,
    *,
    forward_signals: bool = True,
    stdin: bool = True,
) -> int:
    """Run ``spec`` in the same sandbox as :func:`run_step`, attached to the caller's
    stdout/stderr and, with ``stdin``, its stdin (else the rootfs's /dev/null), for
    ``pipeline run``; returns its exit code.

    With ``spec.tty`` the command gets a pty of the sandbox's own devpts instead, made by
    its pid 1 and relayed here (:mod:`pipeline.sandbox.pty`): the caller's terminal, in
    raw mode meanwhile, never reaches the sandbox. The sandbox runs in its own session, so
    a terminal's Ctrl-C reaches only the caller (or, through the relay in raw mode, the
    command's own terminal); with ``forward_signals`` (main thread only) SIGINT, SIGTERM,
    SIGHUP and SIGQUIT are forwarded to the process group of the started command, once
    each, and SIGWINCH resizes its terminal; the previous handlers are restored
    afterwards. Use ``network="default"`` for a server the host can reach. When it
    returns, nothing is mounted anywhere; ``upper`` holds whatever the command wrote (the
    caller throws it away), cleaned of placeholders as in ``run_step``.
    """
    from pipeline.sandbox import pty

    with _Sandbox(lowerdirs, upper, work, spec) as box:
        console = pty.console_pair() if spec.tty else None
        box.console_fd = console[1] if console else -1
        try:
            proc = box.start(stdin=None if stdin else subprocess.DEVNULL, stdout=None, stderr=None)
        finally:
            if console:
                os.close(console[1])
        master = pty.receive_master(console[0]) if console else None
        previous: dict[int, Any] = {}

        def forward(signum: int, _frame: object) -> None:
            if proc.poll() is None:
                proc.send_signal(signum)

        if forward_signals and threading.current_thread() is threading.main_thread():
            for sig in _FORWARDED:
                previous[sig] = signal.signal(sig, forward)
            if master is not None:
                previous[signal.SIGWINCH] = signal.signal(
                    signal.SIGWINCH, lambda *_: pty.copy_window_size(master)
                )
        try:
            if master is not None:
                pty.relay(master, stdin_fd=0 if stdin else None, stdout_fd=1)
            proc.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if master is not None:
                os.close(master)
        return box.finish(())


# --- the parent side ------------------------------------------------------------------


class _Sandbox:
    """One sandbox run: validates, lays out ``work``, spawns stage 1, cleans up after."""

    def __init__(
        self,
        lowerdirs: Sequence[Path],
        upper: Path,
        work: Path,
        spec: RunSpec,
        owner: object = None,
    ) -> None:
        self.owner = owner
        self.lowerdirs = [Path(os.path.abspath(p)) for p in lowerdirs]
        self.upper = Path(os.path.abspath(upper))
        self.work = Path(os.path.abspath(work))
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None
        self.status_r = -1
        self.status: dict[str, Any] = {}
        self.pidfd = -1
        self.console_fd = -1  # the sandbox's end of the terminal's socket (tty only)

    def __enter__(self) -> _Sandbox:
        _validate(self.lowerdirs, self.upper, self.work, self.spec)
        return self

    def start(self, stdin: Any, stdout: Any, stderr: Any) -> subprocess.Popen[bytes]:
        if _refusing:
            raise SandboxError("sandbox: stopped: kill_all(refuse_new=True) was called")
        options = layout(self.lowerdirs, self.upper, self.work)
        spec = self.spec
        status_r, status_w = os.pipe()
        self.status_r = status_r
        doc = {
            "parent_pid": os.getpid(),
            "status_fd": status_w,
            "root": str(self.work / "root"),
            "links": str(self.work / "l"),
            "upper": str(self.upper),
            "overlay": options,
            "layers": len(self.lowerdirs),
            "argv": list(spec.argv),
            "env": [list(kv) for kv in spec.env],
            "default_path": DEFAULT_PATH,
            "workdir": spec.workdir,
            "user": spec.user,
            "network": spec.network,
            "hostname": spec.hostname,
            "resolv": spec.resolv,
            "stdin_null": stdin is subprocess.DEVNULL and not spec.tty,
            "console_fd": self.console_fd,
            "binds": [
                {"source": os.path.abspath(b.source), "target": b.target, "readonly": b.readonly}
                for b in spec.binds
            ],
        }
        # A memfd, not argv or a file: no size limit, no path, nothing shown by ps.
        spec_fd = os.memfd_create("pipeline-sandbox-spec", os.MFD_CLOEXEC)
        try:
            os.write(spec_fd, marshal.dumps(doc))
            with _live_lock:  # kill_all sees this sandbox, or it sees _refusing set
                self.proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _INIT, str(spec_fd)],
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    pass_fds=(status_w, spec_fd, *([self.console_fd] * (self.console_fd >= 0))),
                    env=_CHILD_ENV,
                    start_new_session=True,
                )
                # Our unreaped child, so its pid cannot be reused before this is open.
                self.pidfd = os.pidfd_open(self.proc.pid)
                _live.add(self)
                if _refusing:
                    raise SandboxError("sandbox: stopped: kill_all(refuse_new=True) was called")
        except OSError as exc:
            raise SandboxError(f"sandbox: cannot start {sys.executable}: {exc}") from None
        finally:
            os.close(status_w)
            os.close(spec_fd)
        return self.proc

    def _stop(self) -> None:
        """Kill the step and wait until all of it is gone (as :func:`kill_all` does)."""
        assert self.proc is not None
        if self.pidfd < 0:
            self.proc.kill()  # PDEATHSIG takes pid 1 and the whole step with it
        elif _send(self.pidfd, KILL_SIGNAL) and _wait_exited([self.pidfd], KILL_GRACE):
            self.proc.kill()

    def finish(self, tail: Sequence[str]) -> int:
        """Wait, read the status, undo placeholders; the exit code or SandboxError."""
        assert self.proc is not None
        rc = self.proc.wait()
        self._read_status()
        if "error" in self.status:
            raise SandboxError(f"sandbox: {self.status['error']}")
        if not self.status.get("ready"):
            how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
            last = f": {tail[-1]}" if tail else ""
            raise SandboxError(f"sandbox: setup died ({how}){last}")
        return 128 - rc if rc < 0 else rc

    def _read_status(self) -> None:
        if self.status_r < 0:
            return
        chunks = []
        # EOF only once stage 2 (pid 1) is gone too: a sync point even after a SIGKILL.
        while chunk := os.read(self.status_r, 65536):
            chunks.append(chunk)
        os.close(self.status_r)
        self.status_r = -1
        if chunks:
            try:
                message = marshal.loads(b"".join(chunks))
            except (EOFError, ValueError, TypeError):
                return  # cut short by a kill: treated as "never got ready"
            if isinstance(message, dict):
                self.status = message

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc is not None:
                if self.proc.poll() is None:
                    self._stop()
                self.proc.wait()
                if self.proc.stdout is not None:
                    self.proc.stdout.close()
                with _live_lock:
                    _live.discard(self)
                    if self.pidfd >= 0:
                        os.close(self.pidfd)
                        self.pidfd = -1
            self._read_status()
            if self.status.get("ready"):
                remove_placeholders(self.upper, self.status.get("placeholders", []))
                strip_bookkeeping(self.upper)
        finally:
            clear_work(self.work)


def _validate(lowerdirs: Sequence[Path], upper: Path, work: Path, spec: RunSpec) -> None:
    if not spec.argv:
        raise SandboxError("sandbox: empty command")
    if spec.network not in NETWORKS:
        raise SandboxError(f"sandbox: unknown network {spec.network!r} (use 'default' or 'none')")
    if not 0 < len(spec.hostname.encode()) <= 64:
        raise SandboxError(f"sandbox: hostname {spec.hostname!r} must be 1 to 64 bytes")
    if not spec.workdir.startswith("/"):
        raise SandboxError(f"sandbox: workdir {spec.workdir!r} is not absolute")
    if not lowerdirs:
        raise SandboxError("sandbox: no lower layers (use an empty dir for scratch)")
    if len(lowerdirs) > OVERLAY_MAX_LOWER:
        raise SandboxError(
            f"sandbox: {len(lowerdirs)} layers; overlayfs stacks at most {OVERLAY_MAX_LOWER}"
        )
    for d in lowerdirs:
        if not d.is_dir():
            raise SandboxError(f"sandbox: lower layer {d} is not a directory")
    for d in (upper, work):
        if not d.is_dir():
            raise SandboxError(f"sandbox: {d} is not a directory")
    if upper.stat().st_dev != work.stat().st_dev:
        raise SandboxError(f"sandbox: upper {upper} and work {work} are on different filesystems")
    if any(work.iterdir()):
        raise SandboxError(f"sandbox: work dir {work} is not empty")
    for b in spec.binds:
        if not b.target.startswith("/"):
            raise SandboxError(f"sandbox: bind target {b.target!r} is not absolute")
        if not os.path.exists(b.source):
            raise SandboxError(f"sandbox: bind source {b.source} does not exist")
    if "\x00" in "".join((*spec.argv, *(k + v for k, v in spec.env))):
        raise SandboxError("sandbox: NUL byte in command or environment")


class LinuxRunner:
    """The :class:`~pipeline.sandbox.api.StepRunner` of this module: real namespaces,
    overlayfs and the boundary described above. After :meth:`stop`, every running step
    is killed and no new one starts (``run_step`` raises SandboxError at once)."""

    def __init__(self) -> None:
        self._stopped = threading.Event()

    def check_host(self) -> None:
        check_host()

    def run_step(
        self,
        lowerdirs: Sequence[Path],
        upper: Path,
        work: Path,
        spec: RunSpec,
        on_output: Callable[[str], None] | None = None,
    ) -> RunResult:
        if self._stopped.is_set():
            raise SandboxError("sandbox: the build is stopping; step not started")
        return run_step(lowerdirs, upper, work, spec, on_output, owner=self)

    def stop(self) -> int:
        """Kill the steps this runner started (not other runners' in this process)."""
        self._stopped.set()
        return kill_all(owner=self)
