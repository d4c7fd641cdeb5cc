"""Containment, for real: each row of the table is a RUN line that tries one way out of the
sandbox, built by the real CLI on the busybox base, and must fail.

Every row runs against a canary file and a secret file the test makes outside the store,
and a token in the builder's own environment. Afterwards: the canary is unchanged (bytes,
mode, mtime), nothing new appeared next to it, the secret's and the token's bytes are in no
row's output and in no file of the store, nothing is mounted under the test's dirs, no
process of a step is left, nobody connected to the test's abstract unix socket, and each
row's output shows its own attempts *refused* (a probe prints ``<what>: <ERRNO>``, so a row
whose attempt never ran fails as surely as one that got out). A subset runs again through
``pipeline run``. The probes (tests/cases/containment/escape.c, compiled static here) only
read and report; the only writes they try go to the canary.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.store import PRIVATE_DIRS, Store
from tests.conftest import make_cli

pytestmark = [pytest.mark.root, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
PROBE_SOURCE = HERE / "cases" / "containment" / "escape.c"
PROBE = "/usr/local/bin/escape"

# Docker's default capabilities (0xa80425fb: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID
# SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP), without
# MKNOD (bit 27); on the host network also without NET_RAW (bit 13).
DOCKER_CAPS = 0xA80425FB
OWN_NET_CAPS = DOCKER_CAPS & ~(1 << 27)
HOST_NET_CAPS = OWN_NET_CAPS & ~(1 << 13)

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
SYS_FILES = (  # host-wide knobs under /sys; those this kernel has are probed
    "/sys/kernel/uevent_helper",
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/sys/power/state",
    "/sys/module/overlay/parameters/redirect_dir",
    "/sys/kernel/profiling",
)
PROC_FILES = (  # the same under /proc (core_pattern: the classic pipe-to-host escape)
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/kernel/modprobe",
    "/proc/sys/vm/drop_caches",
    "/proc/sys/kernel/sysrq",
    "/proc/sysrq-trigger",
    "/proc/sys/fs/binfmt_misc/register",
)


@dataclass(frozen=True)
class Row:
    """One way out. ``cmd`` and ``expect`` are formatted with the host's facts; each
    expected line must appear in the row's output (``re:`` makes it a regex)."""

    id: str
    cmd: str
    expect: tuple[str, ...]
    forbid: tuple[str, ...] = ()
    user: str = ""
    network: str = "default"
    setup: str = ""  # a RUN as root before the row's own (e.g. make a setuid file)
    via_run: bool = False  # also run through `pipeline run`
    landlock: bool = False  # contained by the Landlock scopes (Linux 6.12+) alone


def _landlock_abi() -> int:
    """The kernel's Landlock ABI (landlock_create_ruleset(NULL, 0, VERSION)), 0 if none."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return max(int(libc.syscall(444, None, 0, 1)), 0) if os.uname().machine == "x86_64" else 0


LANDLOCK_SCOPES = _landlock_abi() >= 6


def _present(paths: tuple[str, ...]) -> list[str]:
    return [p for p in paths if os.path.exists(p)]


def rows() -> list[Row]:
    sys_files = _present(SYS_FILES)
    proc_files = _present(PROC_FILES)
    masked_files = [p for p in _present(MASKED) if not os.path.isdir(p)]
    masked_dirs = [p for p in _present(MASKED) if os.path.isdir(p)]
    masked_cmd = " ; ".join(
        [f"{PROBE} read {' '.join(masked_files)}"]
        + [f'echo "entries {d} $(ls -A {d} | wc -l)"' for d in masked_dirs]
    )
    return [
        Row(
            "proc1-root",
            f"{PROBE} read /proc/1/root{{secret}} ; {PROBE} append /proc/1/root{{canary}} ;"
            " ls /proc/1/root/",
            (
                "read /proc/1/root{secret}: EACCES",
                "append: EACCES",
                "ls: /proc/1/root/: Permission denied",
            ),
            via_run=True,
        ),
        Row(
            "proc1-cwd",
            f"{PROBE} read /proc/1/cwd{{secret}} ; {PROBE} append /proc/1/cwd{{canary}}",
            ("read /proc/1/cwd{secret}: EACCES", "append: EACCES"),
        ),
        Row(
            "proc1-fd",
            "ls -1 /proc/1/fd/ ; for f in 0 1 2 3 4 5 6 7 8 9; do"
            f" {PROBE} read /proc/1/fd/$f/{{secret_rel}} ; done",
            # pid 1 holds fds 0-2 only, and none of them can be opened through /proc
            ("0", "1", "2", "re:read /proc/1/fd/0/.*: EACCES", "re:read /proc/1/fd/3/.*: ENOENT"),
            forbid=(r"read .*: \d+ bytes", "3"),
            via_run=True,
        ),
        Row(
            "proc1-environ-mem-exe",
            f"{PROBE} read /proc/1/environ /proc/1/mem /proc/1/exe ;"
            ' echo "map_files: $(ls -A /proc/1/map_files/ | wc -l)" ;'
            " tr '\\0' ' ' < /proc/1/cmdline ; echo ; env",
            (
                "read /proc/1/environ: EACCES",
                "read /proc/1/mem: EACCES",
                "read /proc/1/exe: EACCES",
                "map_files: 0",  # pid 1 maps dozens of host files; none is listed
            ),
        ),
        Row(
            "proc-every-pid",
            "for p in /proc/[0-9]*; do"
            f" {PROBE} read $p/root{{secret}} $p/cwd{{secret}} ; {PROBE} append $p/root{{canary}} ;"
            " done",
            ("read /proc/1/root{secret}: EACCES", "re:read /proc/[2-9]\\d*/root{secret}: ENOENT"),
            forbid=(r"read .*: \d+ bytes",),
        ),
        Row(
            "only-fds-0-2",
            f"{PROBE} fds ; ls /proc/self/fd/",
            ("fds: 0 1 2",),
            via_run=True,
        ),
        Row(
            "chroot-escape-saved-fd",
            f"{PROBE} chroot-escape {{secret}} {{canary}}",
            (
                "chroot-escape chroot: ok",
                "chroot-escape fchdir: ok",
                "chroot-escape chroot .: ok",
                "read {secret}: ENOENT",
                "chroot-escape canary: ENOENT",
                "chroot-escape stat /proc/1/root: EACCES",  # still pid 1's view: contained
            ),
            via_run=True,
        ),
        Row(
            "builder-files-by-path",
            f"{PROBE} read {{secret}} {{store}}/index.db ; {PROBE} append {{canary}} ;"
            " ls {secret_dir} {store}/layers",
            ("read {secret}: ENOENT", "read {store}/index.db: ENOENT", "append: ENOENT"),
        ),
        Row(
            "mknod-host-disk",
            f"{PROBE} mknod /tmp/disk b {{disk_major}} {{disk_minor}} ;"
            f" {PROBE} mknod /dev/disk b {{disk_major}} {{disk_minor}} ;"
            f" {PROBE} mknod /tmp/mem c 1 1 ; mknod /tmp/disk2 b {{disk_major}} {{disk_minor}}",
            ("mknod /tmp/disk: EPERM", "mknod /dev/disk: EPERM", "mknod /tmp/mem: EPERM"),
        ),
        Row(
            "dev-is-minimal",
            f'echo "dev: $(ls -A /dev | tr "\\n" " ")" ; {PROBE} stat /dev/null ;'
            f" {PROBE} read /dev/mem /dev/kmsg /dev/port /dev/vda /dev/sda",
            (
                "dev: fd full null ptmx pts random shm stderr stdin stdout tty urandom zero ",
                "read /dev/mem: ENOENT",
                "read /dev/kmsg: ENOENT",
                "read /dev/vda: ENOENT",
                "re:stat /dev/null: dev=\\d+ ino=\\d+ rdev=1:3",
            ),
        ),
        Row(
            "mount-tmpfs",
            f"{PROBE} mount-tmpfs /mnt ; mount -t tmpfs none /tmp",
            ("mount-tmpfs: EPERM",),
            via_run=True,
        ),
        Row("mount-proc", f"{PROBE} mount-proc /mnt", ("mount-proc: EPERM",)),
        Row("bind-root", f"{PROBE} bind / /mnt", ("bind: EPERM",)),
        Row(
            "remount-rw",
            f"{PROBE} remount-rw /proc/sys /sys /etc/hosts",
            (
                "remount-rw /proc/sys: EPERM",
                "remount-rw /sys: EPERM",
                "remount-rw /etc/hosts: EPERM",
            ),
        ),
        Row(
            "umount-masks",
            f"{PROBE} umount /proc/sys /sys/firmware /proc /etc/hosts",
            (
                "umount /proc/sys: EPERM",
                "umount /sys/firmware: EPERM",
                "umount /proc: EPERM",
                "umount /etc/hosts: EPERM",
            ),
        ),
        Row("pivot-root", f"cd / && {PROBE} pivot-root", ("pivot-root: EPERM",)),
        Row(
            "new-mount-api",
            f"{PROBE} fsopen ; {PROBE} open-tree",
            ("fsopen: EPERM", "open-tree: EPERM"),
        ),
        Row(
            "namespaces",
            f"{PROBE} unshare ; {PROBE} clone-newuser ; {PROBE} setns /proc/1/ns/mnt ;"
            f" {PROBE} setns /proc/self/ns/mnt ; unshare -U -r true",
            (
                "unshare-user: EPERM",
                "unshare-mount: EPERM",
                "clone-newuser: EPERM",
                "setns open: EACCES",
                "setns: EPERM",
            ),
        ),
        Row(
            "write-sys",
            f"{PROBE} openw {' '.join(sys_files)} ; {PROBE} openw /sys/new ; mkdir /sys/fs/x",
            (*tuple(f"openw {p}: EROFS" for p in sys_files), "openw /sys/new: ENOENT"),
        ),
        Row(
            "write-proc-sys-sysrq",
            f"{PROBE} openw {' '.join(proc_files)}",
            tuple(f"openw {p}: EROFS" for p in proc_files),
        ),
        Row(
            "read-masked-proc-sys",
            masked_cmd,
            tuple(f"read {p}: 0 bytes" for p in masked_files)
            + tuple(f"entries {d} 0" for d in masked_dirs),
        ),
        Row(
            "signal-pid1",
            # (signals pid 1 would forward to the step itself are not sent: harmless, not a way out)
            f"{PROBE} kill 1 0 ; {PROBE} kill 1 9 ; {PROBE} kill 1 28",
            ("kill 1 0: EPERM", "kill 1 9: EPERM", "kill 1 28: EPERM"),
            via_run=True,
            landlock=True,
        ),
        Row(
            "ptrace-pid1",
            f"{PROBE} ptrace 1",
            ("ptrace attach: EPERM", "process_vm_readv: EPERM"),
        ),
        Row(
            "host-pids",
            f"{PROBE} kill {{hostpid}} 0 ; {PROBE} ptrace {{hostpid}}",
            ("kill {hostpid} 0: ESRCH", "ptrace attach: ESRCH", "process_vm_readv: ESRCH"),
        ),
        Row(
            "load-module",
            f"{PROBE} module ; insmod /dev/null",
            ("finit_module: EPERM", "init_module: EPERM", "delete_module: EPERM"),
        ),
        Row(
            "seccomp-refusals",
            f"{PROBE} syscalls ; dmesg",
            (
                "keyctl: EPERM",
                "add_key: EPERM",
                "bpf: EPERM",
                "perf_event_open: EPERM",
                "io_uring_setup: EPERM",
                "userfaultfd: EPERM",
                "syslog: EPERM",
                "open_by_handle_at: EPERM",
                "tiocsti: EPERM",
                "swapoff: EPERM",
                "acct: EPERM",
            ),
        ),
        Row(
            "host-abstract-socket",
            f"{PROBE} abstract {{abstract}}",
            ("abstract connect: EPERM",),
            via_run=True,
            landlock=True,
        ),
        Row(
            "caps-root",
            f"{PROBE} status",
            (
                "euid: 0",
                "CapInh:\t0000000000000000",
                f"CapPrm:\t{HOST_NET_CAPS:016x}",
                f"CapEff:\t{HOST_NET_CAPS:016x}",
                f"CapBnd:\t{HOST_NET_CAPS:016x}",
                "CapAmb:\t0000000000000000",
                "NoNewPrivs:\t0",
                "Seccomp:\t2",
            ),
            via_run=True,
        ),
        Row(
            "caps-root-own-network",
            f"{PROBE} status",
            (
                f"CapPrm:\t{OWN_NET_CAPS:016x}",
                f"CapEff:\t{OWN_NET_CAPS:016x}",
                f"CapBnd:\t{OWN_NET_CAPS:016x}",
            ),
            network="none",
        ),
        Row(
            "caps-user",
            f"{PROBE} status",
            (
                "euid: 1000",
                "CapInh:\t0000000000000000",
                "CapPrm:\t0000000000000000",
                "CapEff:\t0000000000000000",
                f"CapBnd:\t{HOST_NET_CAPS:016x}",
                "CapAmb:\t0000000000000000",
            ),
            user="app",
        ),
        Row(
            "setuid-binary-is-bounded",
            "/tmp/suid status ; /tmp/suid mknod /tmp/disk b {disk_major} {disk_minor}",
            (
                "euid: 0",
                f"CapEff:\t{HOST_NET_CAPS:016x}",
                "NoNewPrivs:\t0",
                "mknod /tmp/disk: EPERM",
            ),
            user="app",
            setup=f"cp {PROBE} /tmp/suid && chmod 4755 /tmp/suid",
        ),
        Row(  # the control: what a step does write must be found by the store scan
            "layer-scan-control",
            "echo {marker} > /marker.txt && echo wrote",
            ("wrote",),
        ),
        Row(
            "daemon-left-behind",
            "setsid sleep 333 >/dev/null 2>&1 & nohup sleep 334 >/dev/null 2>&1 & echo spawned",
            ("spawned",),
        ),
    ]


ROWS = rows()
RUN_ROWS = [r for r in ROWS if r.via_run]


# --- the host side: canary, secret, token, abstract socket ------------------------------


@dataclass
class Host:
    base: Path
    dir: Path
    secret: Path
    canary: Path
    token: str
    env_token: str
    canary_stat: tuple[int, int, int]
    abstract: str
    accepted: list[int]
    store: Path
    facts: dict[str, str]

    def snapshot(self) -> list[str]:
        return sorted(os.listdir(self.dir))


def _abstract_listener(name: str, accepted: list[int], stop: threading.Event) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + name)
    server.listen(8)
    server.settimeout(0.2)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(1)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    base = tmp_path_factory.mktemp("containment")
    outside = base / "host-files"
    outside.mkdir()
    token = "SECRET-" + secrets.token_hex(16)
    secret = outside / "secret.txt"
    secret.write_text(token + "\n")
    canary = outside / "canary.txt"
    canary.write_text("canary: must never change\n")
    os.utime(canary, (1_000_000, 1_000_000))
    st = canary.stat()
    disk = os.stat("/").st_dev
    accepted: list[int] = []
    stop = threading.Event()
    name = f"pipeline-test-{secrets.token_hex(4)}"
    server = _abstract_listener(name, accepted, stop)
    store = base / "store"
    facts = {
        "secret": str(secret),
        "secret_dir": str(outside),
        "secret_rel": str(secret).lstrip("/"),
        "canary": str(canary),
        "store": str(store),
        "disk_major": str(os.major(disk)),
        "disk_minor": str(os.minor(disk)),
        "hostpid": str(os.getpid()),
        "abstract": name,
        "marker": "MARKER-" + secrets.token_hex(16),
    }
    yield Host(
        base,
        outside,
        secret,
        canary,
        token,
        "ENVTOKEN-" + secrets.token_hex(16),
        (st.st_mode, st.st_mtime_ns, st.st_size),
        name,
        accepted,
        store,
        facts,
    )
    stop.set()
    server.close()


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the escape probes (apt-get install gcc libc6-dev)"
    out = tmp_path_factory.mktemp("probe") / "escape"
    subprocess.run(
        [gcc, "-static", "-O1", "-Wall", "-o", str(out), str(PROBE_SOURCE)],
        check=True,
        capture_output=True,
    )
    return out


def _hcl(text: str) -> str:
    """An HCL string literal holding ``text`` verbatim (no interpolation)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("${", "$${").replace("%{", "%%{") + '"'


def _wrapped(row: Row, facts: dict[str, str]) -> str:
    """The row's command with each output line tagged ``@ID`` (build output interleaves)."""
    body = row.cmd.format(**facts)
    return f'( {body} ) 2>&1 | while IFS= read -r l; do echo "@{row.id} $l"; done'


def write_specs(root: Path, probe: Path, facts: dict[str, str]) -> Path:
    specs = root / "specs"
    specs.mkdir()
    shutil.copy2(probe, specs / "escape")
    parts = [
        'image "escape_base" {\n  from = "busybox:latest"\n'
        '  copy {\n    src = ["escape"]\n    dest = "/usr/local/bin/"\n    chmod = "0755"\n  }\n'
        '  tags = ["escape/base:1"]\n}\n'
    ]
    for row in ROWS:
        name = "row_" + row.id.replace("-", "_")
        blocks = []
        if row.setup:
            blocks.append(f"  run {{\n    command = {_hcl(row.setup)}\n  }}\n")
        if row.user:
            blocks.append(f'  user {{\n    name = "{row.user}"\n  }}\n')
        network = f'    network = "{row.network}"\n' if row.network != "default" else ""
        blocks.append(f"  run {{\n    command = {_hcl(_wrapped(row, facts))}\n{network}  }}\n")
        parts.append(
            f'image "{name}" {{\n  from = image.escape_base\n{"".join(blocks)}'
            f'  tags = ["escape/{row.id}:1"]\n}}\n'
        )
    (specs / "escape.hcl").write_text("\n".join(parts))
    return specs


# --- afterwards: what must hold for the whole table ---------------------------------------


def _step_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "sleep 333" in cmd or "sleep 334" in cmd or PROBE in cmd or "/tmp/suid" in cmd:
                found.append(f"{entry.name}: {cmd}")
    return found


def _mounts_under(path: Path) -> list[str]:
    return [m for m in Path("/proc/self/mountinfo").read_text().splitlines() if str(path) in m]


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                if not stat.S_ISREG(path.lstat().st_mode):
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            hits.extend(f"{path}: {n.decode()}" for n in needles if n in data)
    return hits


def assert_host_untouched(host: Host) -> None:
    st = host.canary.stat()
    assert (st.st_mode, st.st_mtime_ns, st.st_size) == host.canary_stat
    assert host.canary.read_text() == "canary: must never change\n"
    assert host.snapshot() == ["canary.txt", "secret.txt"]
    assert host.accepted == [], "a step connected to the host's abstract unix socket"
    assert _mounts_under(host.base) == []
    assert _wait(lambda: _step_processes() == []), _step_processes()


def _wait(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(condition())  # type: ignore[operator]


def check_row(row: Row, lines: list[str], host: Host) -> None:
    if row.landlock and not LANDLOCK_SCOPES:
        pytest.skip("no Landlock ABI 6 here: this way stays open (see pipeline.sandbox)")
    text = "\n".join(lines)
    assert host.token not in text and host.env_token not in text, text
    for want in row.expect:
        want = want.format(**host.facts)
        if want.startswith("re:"):
            ok = any(re.fullmatch(want[3:], line) for line in lines)
        else:
            ok = want in lines
        assert ok, f"{row.id}: no line {want!r} in:\n{text}"
    for bad in (*row.forbid, r"append: ok", r"chroot-escape canary: ok", r".*: \d+ bytes"):
        if bad == r".*: \d+ bytes":
            offending = [x for x in lines if re.fullmatch(bad, x) and not x.endswith(": 0 bytes")]
        else:
            offending = [x for x in lines if re.fullmatch(bad, x)]
        assert not offending, f"{row.id}: {offending}"


# --- the table, through `pipeline build-all` ---------------------------------------------


@pytest.fixture(scope="module")
def built(host: Host, probe: Path, busybox_tar: Path) -> dict[str, list[str]]:
    """Build every row once; each row's output lines, by row id ("" holds the build's
    exit status and its stderr, for the test that checks it)."""
    cli = make_cli(host.store, host.base)
    cli("import", str(busybox_tar), "--tag", "busybox:latest")
    write_specs(host.base, probe, host.facts)
    result = cli(
        "build-all",
        "--specs",
        "specs",
        "--progress",
        "plain",
        "-v",
        env={"ESCAPE_TEST_TOKEN": host.env_token},
        timeout=600,
        check=False,
    )
    by_row: dict[str, list[str]] = {r.id: [] for r in ROWS}
    by_row[""] = [str(result.returncode), result.stderr]
    for line in result.stderr.splitlines():
        m = re.search(r" \| @(\S+) (.*)$", line)
        if m and m.group(1) in by_row:
            by_row[m.group(1)].append(m.group(2))
    return by_row


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_escape_row_is_contained(row: Row, built: dict[str, list[str]], host: Host) -> None:
    check_row(row, built[row.id], host)


def test_dev_null_is_not_the_hosts_node(built: dict[str, list[str]]) -> None:
    line = next(x for x in built["dev-is-minimal"] if x.startswith("stat /dev/null:"))
    found = re.search(r" dev=(\d+) ino=(\d+) ", line)
    assert found, line
    dev, ino = int(found.group(1)), int(found.group(2))
    host_null = os.stat("/dev/null")
    assert (dev, ino) != (host_null.st_dev, host_null.st_ino)


def test_after_the_table_the_host_is_untouched(built: dict[str, list[str]], host: Host) -> None:
    code, stderr = built[""]
    assert code == "0", stderr
    assert all(built.values()), [k for k, v in built.items() if not v]
    assert_host_untouched(host)
    leaks = _files_holding(host.store, [host.token.encode(), host.env_token.encode()])
    assert leaks == []
    # the control: the same scan does find what a step wrote into its layer
    marker = host.facts["marker"].encode()
    assert [h for h in _files_holding(host.store / "layers", [marker]) if "marker.txt" in h]


# --- a subset through `pipeline run` -------------------------------------------------------


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
@pytest.mark.parametrize("row", RUN_ROWS, ids=[r.id for r in RUN_ROWS])
def test_escape_row_is_contained_in_pipeline_run(
    row: Row, tty: bool, built: dict[str, list[str]], host: Host
) -> None:
    """Each row through `pipeline run`, with its output on pipes and (-t) on the
    sandbox's own terminal, which the relay copies to the pipe."""
    cli = make_cli(host.store, host.base)
    result = cli(
        "run",
        *(["-t"] if tty else []),
        "escape/base:1",
        "--",
        "/bin/sh",
        "-c",
        f"( {row.cmd.format(**host.facts)} ) 2>&1; exit 0",
        env={"ESCAPE_TEST_TOKEN": host.env_token},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    check_row(row, result.stdout.splitlines(), host)
    assert_host_untouched(host)


# --- store permissions ---------------------------------------------------------------------


def _modes(root: Path) -> dict[str, int]:
    return {sub: stat.S_IMODE((root / sub).stat().st_mode) for sub in PRIVATE_DIRS}


def test_new_store_is_private(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    assert _modes(store.root) == dict.fromkeys(PRIVATE_DIRS, 0o700)
    assert store.notes == ()


def test_open_store_is_tightened_with_a_note(tmp_path: Path) -> None:
    Store(tmp_path / "store").close()
    for sub in ("", "layers", "tmp"):
        (tmp_path / "store" / sub).chmod(0o755)
    (tmp_path / "store" / "cache").chmod(0o777)
    store = Store(tmp_path / "store")
    assert _modes(store.root) == dict.fromkeys(PRIVATE_DIRS, 0o700)
    root = tmp_path / "store"
    assert store.notes == (
        f"{root}: tightened mode 0755 to 0700 (store content is private)",
        f"{root}/layers: tightened mode 0755 to 0700 (store content is private)",
        f"{root}/cache: tightened mode 0777 to 0700 (store content is private)",
        f"{root}/tmp: tightened mode 0755 to 0700 (store content is private)",
    )
    assert Store(root).notes == ()  # once tightened, nothing more to say


def test_other_users_cannot_reach_stored_layers(built: dict[str, list[str]], host: Host) -> None:
    """A setuid binary sits in a stored layer (the setuid row made one); an unprivileged
    local user cannot even list the store, let alone run it."""
    suid = next((host.store / "layers").rglob("suid"))
    assert suid.stat().st_mode & stat.S_ISUID
    for target in (host.store, host.store / "layers", suid):
        probe = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "ls", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert probe.returncode != 0 and "Permission denied" in probe.stderr, probe


def test_pipeline_run_cannot_type_into_the_callers_terminal(
    built: dict[str, list[str]], host: Host
) -> None:
    """`pipeline run` hands the step the caller's terminal: TIOCSTI (push input into it)
    must be refused, or a step could type commands into the user's shell."""
    import pty

    master, slave = pty.openpty()
    env = dict(os.environ, PIPELINE_STORE=str(host.store))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "escape/base:1", "--", PROBE, "syscalls"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=host.base,
        env=env,
    )
    os.close(slave)
    out = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every slave end is closed
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    lines = out.decode().replace("\r", "").splitlines()
    assert "tiocsti: EPERM" in lines, lines
    assert_host_untouched(host)
