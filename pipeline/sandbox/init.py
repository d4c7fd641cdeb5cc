"""Child side of the sandbox. Started by :mod:`pipeline.sandbox`, never imported by it.

Run as ``python -I -S -c "...from pipeline._sandbox_init import main; main(sys.argv)"
WORK/spec``: imported rather than run as a script, so its bytecode cache is used.
``WORK/spec`` holds the ``marshal`` dump of the dict built by
``pipeline.sandbox._Sandbox.start`` (same interpreter on both sides). Imports are kept
to builtins plus ``ctypes`` (no ``json``, no ``signal``'s enum wrapper,
``pipeline.users`` only for a non-root user): the per-step cost is one small interpreter
start and two forks.

Process tree and who kills whom::

    caller (run_step / run_interactive, host namespaces)
     └─ stage 1  this script: PR_SET_PDEATHSIG=SIGKILL, unshare(mount, pid, uts, ipc[, net])
         └─ stage 2  pid 1 of the new pid namespace: PR_SET_PDEATHSIG=SIGKILL, all mounts
             └─ workload  own process group: chroot, chdir, setgroups/setgid/setuid, exec

* The caller's thread dies -> stage 1 gets SIGKILL -> stage 2 gets SIGKILL -> the pid
  namespace's init is gone, so the kernel SIGKILLs every process left in it.
* The workload exits -> stage 2 exits with its status (128+N for signal N) -> the kernel
  kills what the step left running -> stage 1 exits with the same status.
* When the last process of the mount namespace is gone, every mount made here goes with
  it. ``/`` is made recursively private first, so no mount ever propagates to the host.
* SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 received by stage 1 go to stage 2,
  and from there to the workload's process group.

Status goes to the caller on ``spec["status_fd"]`` as exactly one ``marshal``-ed dict,
read after the sandbox exited: ``{"error": "..."}`` when setup failed (exit status 125),
or ``{"ready": True, "placeholders": [...]}`` once every mount is in place, just before
the workload starts. Each placeholder is ``[path, kind, ino, ctime_ns, mode, uid, gid, size,
xattr_names]`` as seen in the upper directory (see ``pipeline.sandbox`` for the rule).
"""

from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found]  # the C module: `signal` would import enum (~6 ms)
import ctypes
import marshal
import os
import stat
from typing import Any, NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

PR_SET_PDEATHSIG = 1

SETUP_FAILED = 125
MAX_SYMLINKS = 40
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
_libc.prctl.argtypes = (
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
)


class SetupError(Exception):
    """The sandbox could not be set up; the message is one line for the user."""


# Signal forwarding: stage 1 forwards to stage 2, stage 2 to the workload's group.
_target: list[int] = []  # [pid, is_group] once known
_pending: list[int] = []


def _forward(signum: int, _frame: object) -> None:
    if not _target:
        _pending.append(signum)
        return
    pid, group = _target
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


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    what = f"mount {fstype or source or ''} on {target}".replace("  ", " ")
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data) if data else None), what)


def _pdeathsig() -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


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


def _stage1(argv: list[str]) -> NoReturn:
    """Stage 1: new namespaces, then fork stage 2 and relay its exit status."""
    for sig in FORWARDED:
        signal.signal(sig, _forward)
    with open(argv[1], "rb") as f:
        spec = marshal.load(f)
    status_fd = spec["status_fd"]
    try:
        _pdeathsig()
        if os.getppid() != spec["parent_pid"]:
            os._exit(SETUP_FAILED)  # the caller died before we could watch it
        flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC
        if spec["network"] == "none":
            flags |= CLONE_NEWNET
        _check(_libc.unshare(flags), "unshare(mount, pid, uts, ipc namespaces)")
    except SetupError as exc:
        _report(status_fd, error=str(exc))
        os._exit(SETUP_FAILED)
    alive_r, alive_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(alive_w)
        _stage2(spec, alive_r)
    os.close(alive_r)
    _set_target(pid, group=False)
    os._exit(_wait_for(pid))


def _stage2(spec: dict[str, Any], alive_r: int) -> NoReturn:
    """Pid 1 of the new pid namespace: mount everything, start the workload, reap."""
    status_fd = spec["status_fd"]
    try:
        _pdeathsig()
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
    try:  # noqa: SIM105
        os.setpgid(pid, pid)
    except OSError:
        pass
    _set_target(pid, group=True)
    os._exit(_wait_for(pid))


def _exec_workload(plan: dict[str, Any]) -> NoReturn:
    """In the forked child: chroot, chdir, drop to the step's user, exec argv."""
    argv: list[str] = plan["argv"]
    try:
        os.setpgid(0, 0)
        for sig in (*FORWARDED, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        os.chroot(plan["root"])
        os.chdir(plan["workdir"])
        os.setgroups(plan["groups"])
        os.setgid(plan["gid"])
        os.setuid(plan["uid"])
        os.umask(0o022)
        os.closerange(3, 1 << 20)
    except OSError as exc:
        _die(126, f"pipeline: cannot start step: {exc}")
    env: dict[str, str] = plan["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        if "/" in argv[0]:
            _die(127, f"pipeline: exec {argv[0]}: no such file (or its interpreter is missing)")
        _die(127, f"pipeline: exec {argv[0]}: executable not found in PATH={env.get('PATH', '')}")
    except OSError as exc:
        _die(126, f"pipeline: exec {argv[0]}: {exc.strerror}")
    _die(126, "pipeline: exec returned")


def _die(code: int, message: str) -> NoReturn:
    try:
        os.write(2, (message + "\n").encode(errors="replace"))
    finally:
        os._exit(code)


# --- setup ---------------------------------------------------------------------------


def _setup(spec: dict[str, Any]) -> dict[str, Any]:
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    if spec["network"] == "none":
        _loopback_up()
    name = spec["hostname"].encode()
    _check(_libc.sethostname(name, len(name)), f"sethostname({spec['hostname']!r})")

    root = spec["root"]
    os.chdir(spec["links"])  # the overlay options name lowerdirs relative to this dir
    try:
        _mount("overlay", root, "overlay", 0, spec["overlay"])
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
    proc = tracker.ensure("/proc", "dir")
    _mount("proc", root + proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount_dev(root + tracker.ensure("/dev", "dir"))
    if spec["resolv"]:
        for name in ("/etc/resolv.conf", "/etc/hosts"):
            if os.path.exists(name):
                _bind(name, root + tracker.ensure(name, "file"), readonly=True)
    for bind in spec["binds"]:
        kind = "dir" if os.path.isdir(bind["source"]) else "file"
        target = tracker.ensure(bind["target"], kind)
        _bind(bind["source"], root + target, readonly=bind["readonly"])

    return {
        "root": root,
        "workdir": spec["workdir"],  # chdir after chroot: symlinks resolve in the image
        "argv": spec["argv"],
        "env": env,
        "uid": uid,
        "gid": gid,
        "groups": groups,
        "placeholders": tracker.records(),
    }


def _bind(source: str, target: str, readonly: bool) -> None:
    _mount(source, target, None, MS_BIND)
    if readonly:
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
        _mount(None, target, None, flags)


def _mount_dev(dev: str) -> None:
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k")
    for name in DEVICES:
        host = "/dev/" + name
        if os.path.exists(host):
            path = f"{dev}/{name}"
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            _mount(host, path, None, MS_BIND)
    os.mkdir(dev + "/shm", 0o1777)
    os.chmod(dev + "/shm", 0o1777)
    _mount("shm", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    os.mkdir(dev + "/pts", 0o755)
    _mount(
        "devpts",
        dev + "/pts",
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )
    for name, target in DEV_LINKS:
        os.symlink(target, f"{dev}/{name}")


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
