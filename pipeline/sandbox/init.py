"""Child side of the sandbox. Started by :mod:`pipeline.sandbox.linux`, never imported by it.

Run as ``python -I -S -c "...from pipeline.sandbox.init import main; main(sys.argv)" FD``
with only ``PIPELINE_SANDBOX_PATH`` (where the package lives) in its environment:
imported rather than run as a script, so its bytecode cache is used. ``FD`` is a memfd
holding the ``marshal`` dump of the dict built by ``pipeline.sandbox._Sandbox.start``
(same interpreter on both sides), so the spec (paths, environment) never shows in
``/proc/1/cmdline``. Imports are builtins, ``ctypes``, ``_socket``,
:mod:`pipeline.sandbox.rootfs` and :mod:`pipeline.sandbox.confine` (``pipeline.users``
only for a non-root user), all before the pivot; after it ``sys.path`` is empty, so no
module can ever be loaded from the image.

Process tree and who kills whom::

    caller (run_step / run_interactive, host namespaces)
     └─ stage 1  PR_SET_PDEATHSIG=SIGKILL, unshare(pid), stays in the host's mounts
         └─ stage 2  pid 1 of the new pid namespace: unshare(mount, uts, ipc, cgroup[, net]),
             │       every mount, pivot_root into the rootfs, then drops to CAP_KILL only
             └─ workload  own process group: caps, Landlock, seccomp, user, fds 0-2, exec

* The caller's thread dies -> stage 1 gets SIGKILL -> stage 2 gets SIGKILL -> the pid
  namespace's init is gone, so the kernel SIGKILLs every process left in it.
* Stage 1 gets :data:`KILL_SIGNAL` (SIGRTMIN; ``pipeline.sandbox.kill_all``) -> it
  SIGKILLs stage 2, reaps it and exits 137. The kernel lets it reap pid 1 only once every
  other process of the namespace is gone, so stage 1's exit means the whole step is gone.
* The workload exits -> stage 2 exits with its status (128+N for signal N) -> the kernel
  kills what the step left running -> stage 1 exits with the same status.
* Only stage 2 and the step's processes are in the step's mount namespace, so when the
  last of them is gone every mount made here goes with it. ``/`` is made recursively
  private first, so no mount ever propagates to the host.
* SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 received by stage 1 go to stage 2,
  and from there to the workload's process group.

What pid 1 keeps: after the pivot its root and cwd are the rootfs; it is not dumpable,
so ``/proc/1/{root,cwd,fd,environ,exe,mem}`` and ptrace are refused to the step (they
need CAP_SYS_PTRACE); once the workload is started it closes every fd but 0-2 and drops
to CAP_KILL alone (to forward signals to a non-root workload). Its memory still maps the
host's Python binary and libraries; only /proc/1/map_files would name them, which needs
CAP_SYS_ADMIN. ``/proc/1/cmdline`` (world-readable) shows the Python path and ``-c`` code.
With a terminal (``spec["console_fd"]``, a unix socket to the caller), pid 1 opens a pty
in the sandbox's own devpts after the pivot, sends the master to the caller and hands the
slave to the workload, which makes it its controlling terminal and fds 0-2; stage 1 closes
its copy of the socket at once, so the caller sees EOF when setup fails.
Otherwise fds 0-2 are the caller's (a pipe, a terminal, a file); a directory among them, which would
lead back to the host's tree, never gets this far: Python refuses to start with one.

Status goes to the caller on ``spec["status_fd"]`` as exactly one ``marshal``-ed dict,
read after the sandbox exited: ``{"error": "..."}`` when setup failed (exit status 125),
or ``{"ready": True, "placeholders": [...]}`` once every mount is in place, just before
the workload starts. Each placeholder is ``[path, kind, ino, ctime_ns, mode, uid, gid, size,
xattr_names]`` as seen in the upper directory (see ``pipeline.sandbox`` for the rule).
The workload exits 126 (127 for a missing command) with one line on stderr when it cannot
be confined or started.
"""

from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found]  # the C module: `signal` would import enum (~6 ms)
import _socket  # the C module, for the terminal's fd only: `socket` would import enum
import ctypes
import marshal
import os
import stat
import sys

from pipeline.sandbox import confine as _confine
from pipeline.sandbox.rootfs import (
    MS_PRIVATE,
    MS_REC,
    SetupError,
    bind,
    check,
    libc,
    mask_paths,
    mount,
    mount_dev,
    mount_proc,
    mount_sys,
    pivot_into,
    read_only_paths,
)

TYPE_CHECKING = False  # `typing` costs ~12 ms per step; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Any, NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
TIOCSCTTY = 0x540E

SETUP_FAILED = 125
MAX_SYMLINKS = 40
KILL_SIGNAL = signal.SIGRTMIN  # pipeline.sandbox sends it to stage 1: "kill the step"
FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)

libc.unshare.argtypes = (ctypes.c_int,)
libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_int)


# Signal forwarding: stage 1 forwards to stage 2, stage 2 to the workload's group.
_target: list[int] = []  # [pid, is_group] once known
_pending: list[int] = []


def _forward(signum: int, _frame: object) -> None:
    if not _target:
        _pending.append(signum)
        return
    pid, group = _target
    if signum == KILL_SIGNAL:  # only stage 1 handles it
        signum = signal.SIGKILL
    try:
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _set_target(pid: int, group: bool) -> None:
    _target[:] = [pid, int(group)]
    while _pending:
        _forward(_pending.pop(0), None)


def _report(fd: int, **message: Any) -> None:
    data = marshal.dumps(message)
    while data:
        data = data[os.write(fd, data) :]


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _wait_for(pid: int) -> int:
    """Reap children until ``pid`` exits; its exit code (128+N when killed by signal N)."""
    while True:
        try:
            done, status = os.wait()
        except ChildProcessError:
            return SETUP_FAILED
        if done == pid:
            return _exit_code(status)


def main(argv: list[str]) -> NoReturn:
    """Entry point: stage 1, and never a traceback on the step's output, in any stage."""
    try:
        _stage1(argv)
    except BaseException as exc:
        os.write(2, f"pipeline sandbox: {type(exc).__name__}: {exc}\n".encode())
        os._exit(SETUP_FAILED)


def _read_spec(fd: int) -> dict[str, Any]:
    data = os.pread(fd, os.fstat(fd).st_size, 0)
    os.close(fd)
    spec: dict[str, Any] = marshal.loads(data)
    return spec


def _stage1(argv: list[str]) -> NoReturn:
    """Stage 1: a new pid namespace, then fork stage 2 (its pid 1) and relay its status."""
    for sig in (*FORWARDED, KILL_SIGNAL):
        signal.signal(sig, _forward)
    spec = _read_spec(int(argv[1]))
    status_fd = spec["status_fd"]
    try:
        _confine.set_pdeathsig(signal.SIGKILL)
        if os.getppid() != spec["parent_pid"]:
            os._exit(SETUP_FAILED)  # the caller died before we could watch it
        check(libc.unshare(CLONE_NEWPID), "unshare(pid namespace)")
    except SetupError as exc:
        _report(status_fd, error=str(exc))
        os._exit(SETUP_FAILED)
    alive_r, alive_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(alive_w)
        _stage2(spec, alive_r)
    os.close(alive_r)
    if spec["console_fd"] >= 0:  # stage 2 sends the terminal; EOF once it is gone
        os.close(spec["console_fd"])
    _set_target(pid, group=False)
    os._exit(_wait_for(pid))


def _stage2(spec: dict[str, Any], alive_r: int) -> NoReturn:
    """Pid 1 of the new pid namespace: mount, pivot, start the workload, drop, reap."""
    status_fd = spec["status_fd"]
    try:
        _confine.set_pdeathsig(signal.SIGKILL)
        _confine.set_dumpable(False)
        os.set_blocking(alive_r, False)
        try:
            if os.read(alive_r, 1) == b"":
                os._exit(SETUP_FAILED)  # stage 1 died before PR_SET_PDEATHSIG took hold
        except BlockingIOError:
            pass
        os.close(alive_r)
        plan = _setup(spec)
    except SetupError as exc:
        _report(status_fd, error=str(exc))
        os._exit(SETUP_FAILED)
    except Exception as exc:  # a bug or an unexpected OS error: still one line
        _report(status_fd, error=f"setup failed: {type(exc).__name__}: {exc}")
        os._exit(SETUP_FAILED)
    _report(status_fd, ready=True, placeholders=plan["placeholders"])
    os.close(status_fd)
    pid = os.fork()
    if pid == 0:
        _exec_workload(plan)
    # The child does it too; whichever runs first wins (contextlib would cost an import).
    # With a terminal the child makes its own session (a group leader could not).
    try:
        if plan["tty_fd"] < 0:
            os.setpgid(pid, pid)
    except OSError:
        pass
    _set_target(pid, group=True)
    try:
        os.closerange(3, 1 << 20)
        only_kill = _confine.mask(frozenset({"KILL"}))
        _confine.limit_bounding(only_kill)
        _confine.set_caps(only_kill)
        _confine.set_pdeathsig(signal.SIGKILL)
    except (SetupError, OSError) as exc:
        os.kill(pid, signal.SIGKILL)
        _die(SETUP_FAILED, f"pipeline sandbox: pid 1 cannot drop its privileges: {exc}")
    os._exit(_wait_for(pid))


def _exec_workload(plan: dict[str, Any]) -> NoReturn:
    """In the forked child, already inside the rootfs: confine, become the step's user,
    keep fds 0-2 only, exec argv."""
    argv: list[str] = plan["argv"]
    uid: int = plan["uid"]
    caps: int = plan["caps"]
    try:
        if plan["tty_fd"] >= 0:
            _take_terminal(plan["tty_fd"])
        else:
            os.setpgid(0, 0)
        for sig in (*FORWARDED, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        if plan["stdin_null"]:  # the rootfs's own /dev/null, not the caller's
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        _confine.limit_bounding(caps)
        _confine.landlock_scope(plan["landlock"])  # these two need CAP_SYS_ADMIN
        plan["seccomp"].load()
        _confine.set_caps(caps)  # from here on no more than a Docker container has
        os.chdir(plan["workdir"])
        os.setgroups(plan["groups"])
        os.setgid(plan["gid"])
        os.setuid(uid)  # a non-root uid clears permitted and effective
        if uid != 0:
            _confine.set_caps(0)
        os.umask(0o022)
        os.closerange(3, 1 << 20)
    except (OSError, SetupError) as exc:
        _die(126, f"pipeline: cannot start step: {exc}")
    env: dict[str, str] = plan["env"]
    try:
        _execvpe(argv, env)
    except FileNotFoundError:
        if "/" in argv[0]:
            _die(127, f"pipeline: exec {argv[0]}: no such file (or its interpreter is missing)")
        _die(127, f"pipeline: exec {argv[0]}: executable not found in PATH={env.get('PATH', '')}")
    except OSError as exc:
        _die(126, f"pipeline: exec {argv[0]}: {exc.strerror}")
    _die(126, "pipeline: exec returned")


def _take_terminal(fd: int) -> None:
    """A new session whose controlling terminal is the pty ``fd``, on fds 0-2."""
    os.setsid()
    check(libc.ioctl(fd, TIOCSCTTY, 0), "ioctl(TIOCSCTTY)")
    for target in (0, 1, 2):
        os.dup2(fd, target)
    os.close(fd)


def _open_console(console_fd: int, uid: int) -> int:
    """After the pivot: a pty of the sandbox's own devpts (``/dev/ptmx`` is its
    ``pts/ptmx``), as runc makes one. The master goes to the caller over the unix
    socket ``console_fd`` (SCM_RIGHTS) and is closed here; the slave, owned by the
    workload's user, is returned for the workload. Nothing of the host's devpts is
    ever handed in, and the caller relays bytes, so the step never holds the caller's
    terminal."""
    master, slave = os.openpty()
    os.fchown(slave, uid, -1)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, console_fd)
    try:
        rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, master.to_bytes(4, sys.byteorder))]
        sock.sendmsg([b"t"], rights)
    finally:
        sock.close()
        os.close(master)
    return slave


def _execvpe(argv: list[str], env: dict[str, str]) -> NoReturn:
    """``os.execvpe`` without its lazy ``import warnings``: nothing may be imported after
    the pivot (the import path is emptied then, see :func:`_setup`)."""
    if "/" in argv[0]:
        os.execve(argv[0], argv, env)
    first: OSError | None = None
    for folder in env.get("PATH", "").split(":"):
        try:
            os.execve(os.path.join(folder or ".", argv[0]), argv, env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            first = first or exc
    raise first or FileNotFoundError(argv[0])


def _die(code: int, message: str) -> NoReturn:
    try:
        os.write(2, (message + "\n").encode(errors="replace"))
    finally:
        os._exit(code)


# --- setup ---------------------------------------------------------------------------


def _setup(spec: dict[str, Any]) -> dict[str, Any]:
    """Everything between the new namespaces and the workload's fork, in runc's order:
    namespaces, rootfs and its mounts (host paths still reachable), placeholders recorded,
    seccomp prepared, pivot, then read-only and masked paths (in-root paths)."""
    flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP
    if spec["network"] == "none":
        flags |= CLONE_NEWNET
    check(libc.unshare(flags), "unshare(mount, uts, ipc, cgroup namespaces)")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    if spec["network"] == "none":
        _loopback_up()
    name = spec["hostname"].encode()
    check(libc.sethostname(name, len(name)), f"sethostname({spec['hostname']!r})")

    root = spec["root"]
    os.chdir(spec["links"])  # the overlay options name lowerdirs relative to this dir
    try:
        mount("overlay", root, "overlay", 0, spec["overlay"])
    except SetupError as exc:
        raise SetupError(
            f"{exc} ({spec['layers']} lower layers, upper {spec['upper']}; the kernel log says why)"
        ) from None
    os.chdir("/")

    passwd = _read_text(root, "/etc/passwd")
    if spec["user"].strip():
        from pipeline.users import resolve_user  # dataclasses: ~14 ms, so only when needed

        try:
            ids = resolve_user(spec["user"], passwd, _read_text(root, "/etc/group"))
        except ValueError as exc:
            raise SetupError(f"user {spec['user']!r}: {exc}") from None
        uid, gid, groups = ids.uid, ids.gid, list(ids.groups)
    else:
        uid, gid, groups = 0, 0, []  # resolve_user("") is root with no extra groups

    env = dict(spec["env"])
    env.setdefault("PATH", spec["default_path"])
    if "HOME" not in env:
        env["HOME"] = _home(passwd, uid)

    # The working directory is part of the layer, like Docker: made before the tracker
    # starts, owned by the step's user.
    workdir = _resolve(root, spec["workdir"])
    _make_dirs(root, workdir, uid, gid)

    tracker = _Placeholders(root, spec["upper"])
    mount_proc(root + tracker.ensure("/proc", "dir"))
    mount_dev(root + tracker.ensure("/dev", "dir"))
    mount_sys(root + tracker.ensure("/sys", "dir"))
    if spec["resolv"]:
        for name in ("/etc/resolv.conf", "/etc/hosts"):
            if os.path.exists(name):
                bind(name, root + tracker.ensure(name, "file"), readonly=True)
    for entry in spec["binds"]:
        kind = "dir" if os.path.isdir(entry["source"]) else "file"
        target = tracker.ensure(entry["target"], kind)
        bind(entry["source"], root + target, readonly=entry["readonly"])
    placeholders = tracker.records()  # the upper dir is out of reach after the pivot

    seccomp = _confine.prepare_filter()
    landlock = _confine.landlock_abi()
    pivot_into(root)
    # From here on nothing is imported: a module not loaded yet would be looked up in
    # the image. With an empty path such an import fails instead (a bug, not a hole).
    sys.path.clear()
    sys.path_importer_cache.clear()
    read_only_paths()
    mask_paths()
    tty_fd = -1 if spec["console_fd"] < 0 else _open_console(spec["console_fd"], uid)
    return {
        "workdir": spec["workdir"],  # chdir after the pivot: symlinks resolve in the image
        "argv": spec["argv"],
        "env": env,
        "uid": uid,
        "gid": gid,
        "groups": groups,
        "caps": _confine.mask(_confine.step_caps(own_network=spec["network"] == "none")),
        "seccomp": seccomp,
        "landlock": landlock,
        "stdin_null": spec["stdin_null"],
        "tty_fd": tty_fd,
        "placeholders": placeholders,
    }


def _loopback_up() -> None:
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = fcntl.ioctl(sock, siocgifflags, struct.pack("16sH22x", b"lo", 0))
        flags = struct.unpack("16sH", req[:18])[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


def _resolve(root: str, path: str) -> str:
    """``path`` as seen inside ``root``, every existing symlink resolved within ``root``.

    Absolute link targets restart at ``root`` and ``..`` stops at it, the way a chrooted
    process would see them, so a hostile symlink in an image can never point a mount at
    the host. Missing components are kept as they are. Returns an absolute in-root path.
    """
    todo = [p for p in path.split("/") if p][::-1]
    parts: list[str] = []
    links = 0
    while todo:
        name = todo.pop()
        if name == ".":
            continue
        if name == "..":
            if parts:
                parts.pop()
            continue
        host = os.path.join(root, *parts, name)
        try:
            st = os.lstat(host)
        except (FileNotFoundError, NotADirectoryError):
            parts.append(name)
            continue
        if not stat.S_ISLNK(st.st_mode):
            parts.append(name)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise SetupError(f"{path}: too many levels of symbolic links")
        target = os.readlink(host)
        if target.startswith("/"):
            parts = []
        todo.extend([p for p in target.split("/") if p][::-1])
    return "/" + "/".join(parts)


def _read_text(root: str, path: str) -> str:
    try:
        with open(root + _resolve(root, path), encoding="utf-8", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return ""


def _home(passwd: str, uid: int) -> str:
    for line in passwd.splitlines():
        row = line.split(":")
        if len(row) >= 6 and row[2] == str(uid) and row[5]:
            return row[5]
    return "/"


def _make_dirs(root: str, path: str, uid: int, gid: int) -> None:
    prefix = ""
    for part in [p for p in path.split("/") if p]:
        prefix += "/" + part
        host = root + prefix
        try:
            os.mkdir(host, 0o755)
        except FileExistsError:
            if not os.path.isdir(host):
                raise SetupError(f"workdir {path}: {prefix} is not a directory") from None
            continue
        os.chown(host, uid, gid)


class _Placeholders:
    """Creates mount points missing from the merged tree and remembers what that added
    to the upper dir: the created dirs/files and the parent dirs overlay copied up."""

    def __init__(self, root: str, upper: str) -> None:
        self.root = root
        self.upper = upper
        self.before: dict[str, bool] = {}  # in-root path -> existed in upper before us

    def ensure(self, path: str, kind: str) -> str:
        """Resolve ``path`` inside the root and make it exist as ``kind`` ("dir"/"file")."""
        target = _resolve(self.root, path)
        parts = [p for p in target.split("/") if p]
        prefix = ""
        for i, part in enumerate(parts):
            prefix += "/" + part
            host = self.root + prefix
            last = i == len(parts) - 1
            want_dir = not last or kind == "dir"
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                self._note(parts[: i + 1])
                if want_dir:
                    os.mkdir(host, 0o755)
                else:
                    os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                continue
            if want_dir and not stat.S_ISDIR(st.st_mode):
                raise SetupError(f"cannot mount on {path}: {prefix} is not a directory")
            if not want_dir and stat.S_ISDIR(st.st_mode):
                raise SetupError(f"cannot mount a file on {path}: it is a directory")
        return target

    def _note(self, parts: list[str]) -> None:
        prefix = ""
        for part in parts:
            prefix += "/" + part
            if prefix not in self.before:
                self.before[prefix] = os.path.lexists(self.upper + prefix)

    def records(self) -> list[list[Any]]:
        out = []
        for path, existed in self.before.items():
            if existed:
                continue
            try:
                st = os.lstat(self.upper + path)
            except FileNotFoundError:
                continue  # created under another mount (e.g. /dev), not in the layer
            out.append(
                [
                    path,
                    "dir" if stat.S_ISDIR(st.st_mode) else "file",
                    st.st_ino,
                    st.st_ctime_ns,
                    st.st_mode,
                    st.st_uid,
                    st.st_gid,
                    st.st_size,
                    sorted(os.listxattr(self.upper + path, follow_symlinks=False)),
                ]
            )
        return out
