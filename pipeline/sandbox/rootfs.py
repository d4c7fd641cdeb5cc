"""The mounts of a sandbox's pid 1: its /dev, /proc, /sys and the pivot into the rootfs.

Imported only by :mod:`pipeline.sandbox.init` (child side), never by the caller. Kept to
builtins and ``ctypes``. The order of operations follows runc's libcontainer
(``rootfs_linux.go``): every mount is made under the new root while the host is still
reachable, then ``pivot_root(".", ".")`` and ``umount2(MNT_DETACH)`` of the old root, then
read-only and masked paths, which are plain in-root paths by then.

What the step gets here:

* ``/proc``: a fresh procfs (nosuid, nodev, noexec) of its own pid namespace. The paths of
  :data:`MASKED` that exist are covered (files by the sandbox's own ``/dev/null``, dirs by
  an empty read-only tmpfs) and those of :data:`READ_ONLY` are remounted read-only: the
  same lists as Docker 26's defaults. They hide host-wide kernel state procfs does not
  namespace (``/proc/kcore``, ``/proc/keys``, ``/proc/timer_list`` ...) and keep the step
  from writing host-wide knobs (``/proc/sys``, ``/proc/sysrq-trigger``).
* ``/sys``: sysfs, read-only, nosuid, nodev, noexec (no cgroup filesystem under it).
* ``/dev``: a tmpfs (nosuid, noexec, 64 MiB) with its own device nodes, made with mknod,
  so a chmod inside never reaches the host's nodes: null, zero, full, random, urandom,
  tty (the step's own controlling terminal, if any); ``/dev/pts`` a new devpts instance
  with ``/dev/ptmx`` linked to it; ``/dev/shm`` a tmpfs; the fd/stdin/stdout/stderr links.
  Nothing else of the host's /dev: no disks, no /dev/mem, no /dev/kmsg.
"""

from __future__ import annotations

import ctypes
import os
import stat

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MNT_DETACH = 0x2

# pivot_root has no glibc wrapper; its syscall number per machine (os.uname().machine).
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

DEVICES = (  # name, major, minor: the character devices of every Docker container
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
MASKED = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
)
READ_ONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)
libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
libc.syscall.restype = ctypes.c_long


class SetupError(Exception):
    """The sandbox could not be set up; the message is one line for the user."""


def check(result: int, what: str) -> None:
    """Raise :class:`SetupError` naming ``what`` and errno unless ``result`` is 0."""
    if result != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    what = f"mount {fstype or source or ''} on {target}".replace("  ", " ")
    check(libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data) if data else None), what)


def bind(source: str, target: str, readonly: bool) -> None:
    """Bind ``source`` on ``target``, always nosuid and nodev, read-only if asked."""
    mount(source, target, None, MS_BIND)
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (MS_RDONLY if readonly else 0)
    mount(None, target, None, flags)


def mount_proc(path: str) -> None:
    mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount_sys(path: str) -> None:
    mount("sysfs", path, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount_dev(dev: str) -> None:
    """A fresh /dev at ``dev`` (see the module docstring)."""
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        path = f"{dev}/{name}"
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(path, 0o666)  # mknod honours the umask
    os.mkdir(dev + "/shm")
    mount("shm", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    os.mkdir(dev + "/pts")
    mount(
        "devpts",
        dev + "/pts",
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )
    for name, target in DEV_LINKS:
        os.symlink(target, f"{dev}/{name}")


def pivot_into(root: str) -> None:
    """Make ``root`` this mount namespace's ``/`` and detach the old root entirely.

    As runc does: ``pivot_root(".", ".")`` stacks the old root on top of the new one, so
    no directory in the rootfs is needed to hold it; the old root is then made a slave
    (no unmount can propagate anywhere) and lazily unmounted. Afterwards no path, cwd or
    root of any process in this namespace leads to the host's filesystem.
    """
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise SetupError(f"pivot_root: syscall number unknown on {os.uname().machine}")
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.chdir(root)
        check(libc.syscall(number, b".", b"."), f"pivot_root into {root}")
        os.fchdir(old)
        mount(None, ".", None, MS_SLAVE | MS_REC)
        check(libc.umount2(b".", MNT_DETACH), "umount2(old root, MNT_DETACH)")
    finally:
        os.close(old)
    os.chdir("/")


def read_only_paths(paths: tuple[str, ...] = READ_ONLY) -> None:
    """Bind each existing path on itself and remount it read-only (after the pivot)."""
    for path in paths:
        try:
            mount(path, path, None, MS_BIND | MS_REC)
        except SetupError:
            if not os.path.lexists(path):
                continue
            raise
        kept = os.statvfs(path).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
        mount(path, path, None, kept | MS_BIND | MS_REMOUNT | MS_RDONLY)


def mask_paths(paths: tuple[str, ...] = MASKED) -> None:
    """Cover each existing path (after the pivot): a file by /dev/null, a dir by an empty
    read-only tmpfs. /dev/null is the node :func:`mount_dev` made, checked to be 1:3."""
    null = os.stat("/dev/null")
    if not stat.S_ISCHR(null.st_mode) or null.st_rdev != os.makedev(1, 3):
        raise SetupError("/dev/null in the sandbox is not the null device")
    for path in paths:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISDIR(st.st_mode):
            mount("tmpfs", path, "tmpfs", MS_RDONLY, "nr_blocks=1,nr_inodes=2")
        else:
            mount("/dev/null", path, None, MS_BIND)
