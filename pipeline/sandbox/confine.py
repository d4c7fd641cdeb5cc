"""What a step's processes may do: capabilities, seccomp, Landlock scopes, dumpability.

Imported only by :mod:`pipeline.sandbox.init` (child side). Everything goes through
``ctypes``: glibc for prctl/capset/syscall, and Debian's ``libseccomp.so.2`` for the
seccomp filter (no Python binding needed). The filter and the library are prepared in
pid 1 *before* the pivot into the rootfs, so nothing here is ever loaded from the image.

Capabilities (:func:`step_caps`)
    Docker's default set minus CAP_MKNOD: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETUID,
    SETGID (package installs chown, chmod and switch users), SETPCAP, SETFCAP (packages
    set file capabilities, e.g. ping's), KILL (signal any process of the step),
    NET_BIND_SERVICE (``pipeline run`` servers on ports below 1024), SYS_CHROOT (tools
    that chroot inside the image), AUDIT_WRITE (login, su and sshd write audit records),
    and NET_RAW only when the step has its own network namespace (``network="none"``).
    MKNOD is left out because there is no device cgroup here: a node for the host's disk
    would be a real disk. NET_RAW is left out on the host network because a raw or packet
    socket there sees and forges the host's own traffic; Docker has NET_RAW only inside a
    bridge namespace. Root gets the set as bounding, permitted and effective; inheritable
    and ambient are empty (as in Docker since CVE-2022-24769, so no file's inheritable
    bits can raise a non-root process). A non-root USER gets the set as bounding only,
    so a setuid binary can reach at most that set (no_new_privs is not set, as in Docker).

Seccomp (:func:`prepare_filter`)
    The spirit of Docker's default profile as a deny list (default allow): EPERM for what
    Docker refuses to a container without extra capabilities (mount and the new mount
    API, pivot_root, umount, unshare, setns, clone with any CLONE_NEW* flag, kernel
    modules, kexec, reboot, swap, quotas, clocks, keyrings, bpf, perf_event_open,
    userfaultfd, open_by_handle_at, syslog, NUMA policy calls, io_uring, acct, ioperm and
    iopl, vm86, uselib, ustat, sysfs, vhangup), plus ioctl TIOCSTI and TIOCLINUX so a
    step cannot type into the caller's terminal (``pipeline run`` passes it in); clone3
    gets ENOSYS so libc falls back to clone, whose flags the filter can see. ptrace,
    process_vm_* and kcmp stay allowed (as in Docker on kernels >= 4.8): without
    CAP_SYS_PTRACE they reach only the step's own dumpable processes, so strace works.
    Filters for x86_64 and i386 (IA-32 emulation) alike; any other ABI is killed.
    Loaded while CAP_SYS_ADMIN is still held, so no_new_privs is not needed.

Landlock (:func:`landlock_scope`)
    With Landlock ABI 6 or later (Linux 6.12+) the workload is scoped: it cannot connect
    to an abstract unix socket bound outside the step (on the host network those are the
    host's: D-Bus, X11, container shims) nor signal a process outside it (its pid 1).
    On an older kernel this layer is skipped; :func:`landlock_abi` says which.
"""

from __future__ import annotations

import ctypes
import errno
import os

from pipeline.sandbox.rootfs import SetupError, check, libc

CAP = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "SETPCAP": 8,
    "NET_BIND_SERVICE": 10,
    "NET_RAW": 13,
    "SYS_CHROOT": 18,
    "MKNOD": 27,
    "AUDIT_WRITE": 29,
    "SETFCAP": 31,
}
DOCKER_DEFAULT = frozenset(CAP)  # the 14 capabilities Docker grants by default
NOT_GRANTED = frozenset({"MKNOD"})

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


def step_caps(own_network: bool) -> frozenset[str]:
    """The capability names a step gets (module docstring)."""
    caps = DOCKER_DEFAULT - NOT_GRANTED
    return caps if own_network else caps - {"NET_RAW"}


def mask(names: frozenset[str]) -> int:
    out = 0
    for name in names:
        out |= 1 << CAP[name]
    return out


def _prctl(option: int, arg: int = 0, what: str = "") -> None:
    check(libc.prctl(option, arg, 0, 0, 0), what or f"prctl({option})")


def set_pdeathsig(sig: int) -> None:
    _prctl(PR_SET_PDEATHSIG, sig, "prctl(PR_SET_PDEATHSIG)")


def set_dumpable(on: bool) -> None:
    """Off for pid 1: /proc/1/{root,cwd,fd,environ,mem,exe} and ptrace then need
    CAP_SYS_PTRACE in the host's user namespace, which no step has."""
    _prctl(PR_SET_DUMPABLE, int(on), "prctl(PR_SET_DUMPABLE)")


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def limit_bounding(keep: int) -> None:
    """Drop every capability not in the bit mask ``keep`` from the bounding set (needs
    CAP_SETPCAP, so before :func:`set_caps`)."""
    cap = 0
    while libc.prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0:  # EINVAL past the last cap
        if not keep & (1 << cap):
            _prctl(PR_CAPBSET_DROP, cap, f"prctl(PR_CAPBSET_DROP, {cap})")
        cap += 1
    if cap < 32:
        raise SetupError(f"prctl(PR_CAPBSET_READ) stopped at capability {cap}")


def set_caps(effective_permitted: int) -> None:
    """capset: effective = permitted = the mask, inheritable empty; ambient cleared."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        word = (effective_permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = word
    check(libc.capset(ctypes.byref(header), data), "capset")
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")


# --- Landlock ------------------------------------------------------------------------

_SYS_LANDLOCK = {"x86_64": (444, 446), "aarch64": (444, 446), "riscv64": (444, 446)}
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 0x1
LANDLOCK_SCOPE_SIGNAL = 0x2


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    numbers = _SYS_LANDLOCK.get(os.uname().machine)
    if numbers is None:
        return 0
    version = libc.syscall(numbers[0], None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    return max(int(version), 0)


def landlock_scope(abi: int) -> None:
    """Scope this process and its descendants (module docstring); no-op below ABI 6.
    Needs CAP_SYS_ADMIN (no no_new_privs), so before the capabilities are dropped."""
    if abi < 6:
        return
    create, restrict = _SYS_LANDLOCK[os.uname().machine]
    attr = _RulesetAttr(0, 0, LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL)
    fd = libc.syscall(create, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if fd < 0:
        raise SetupError(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        check(libc.syscall(restrict, int(fd), 0), "landlock_restrict_self")
    finally:
        os.close(fd)


# --- seccomp -------------------------------------------------------------------------

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ARCH_X86 = 0x40000003
SCMP_FLTATR_CTL_NNP = 3
SCMP_CMP_MASKED_EQ = 7

DENIED = (  # EPERM, on every architecture of the filter
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_settime",
    "clock_settime64",
    "create_module",
    "delete_module",
    "fanotify_init",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "migrate_pages",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "sysfs",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "vm86",
    "vm86old",
)
CLONE_NEW_FLAGS = (  # clone(2) with any of these is refused (arg 0 is flags on both ABIs)
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
DENIED_IOCTLS = (0x5412, 0x541C)  # TIOCSTI, TIOCLINUX


class _ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def _libseccomp() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise SetupError(
            f"seccomp: cannot load libseccomp.so.2 ({exc}); install libseccomp2"
        ) from None
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    lib.seccomp_attr_set.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32)
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    )
    lib.seccomp_load.argtypes = (ctypes.c_void_p,)
    return lib


class Filter:
    """A seccomp filter built in pid 1 before the pivot; :meth:`load` in the workload."""

    def __init__(self, lib: ctypes.CDLL, ctx: int) -> None:
        self.lib = lib
        self.ctx = ctx

    def load(self) -> None:
        rc = self.lib.seccomp_load(self.ctx)
        if rc != 0:
            raise SetupError(f"seccomp_load: {os.strerror(-rc)}")


def prepare_filter() -> Filter:
    """Build the step's filter (module docstring) without loading it."""
    lib = _libseccomp()
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise SetupError("seccomp_init failed")

    def ok(rc: int, what: str) -> None:
        if rc != 0:
            raise SetupError(f"seccomp: {what}: {os.strerror(-rc)}")

    ok(lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0), "attr CTL_NNP")
    if os.uname().machine == "x86_64":
        rc = lib.seccomp_arch_add(ctx, SCMP_ARCH_X86)
        ok(0 if rc == -errno.EEXIST else rc, "arch_add(x86)")
    eperm = _errno_action(errno.EPERM)

    def rule(action: int, name: str, *cmps: tuple[int, int, int]) -> None:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr == -1:  # __NR_SCMP_ERROR: a name this libseccomp does not know
            return
        # Other negative numbers are libseccomp's pseudo-syscalls (e.g. vm86 or
        # clock_settime64 on x86_64): it maps them to each arch that has the call.
        array = (_ArgCmp * max(len(cmps), 1))(
            *[_ArgCmp(arg, SCMP_CMP_MASKED_EQ, m, v) for arg, m, v in cmps]
        )
        ok(lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array), f"rule {name}")

    for name in DENIED:
        rule(eperm, name)
    for flag in CLONE_NEW_FLAGS:
        rule(eperm, "clone", (0, flag, flag))
    for request in DENIED_IOCTLS:
        rule(eperm, "ioctl", (1, 0xFFFFFFFF, request))
    rule(_errno_action(errno.ENOSYS), "clone3")
    return Filter(lib, ctx)
