"""The sandbox, for real: overlayfs, namespaces and chroot over a busybox rootfs. No mocks.

Every test also checks (autouse fixture) that no mount appeared in this process's mount
namespace: nothing may leak from the sandbox, whether a step succeeds, fails or is killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.errors import SandboxError
from pipeline.oci.config import DEFAULT_PATH
from pipeline.sandbox.api import BindMount, RunResult, RunSpec
from pipeline.sandbox.linux import check_host, kill_all, run_step

REPO = Path(__file__).resolve().parent.parent
BUSYBOX = Path("/bin/busybox")
pytestmark = pytest.mark.root

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nextra:x:2000:app\n"


# --- fixtures and helpers -------------------------------------------------------------


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs layer: no /proc, /dev, /run, /root, /etc/resolv.conf, /etc/hosts."""
    root = tmp_path_factory.mktemp("rootfs")
    (root / "bin").mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "data").mkdir()
    (root / "data" / "keep.txt").write_text("lower\n")
    (root / "data" / "mod.txt").write_text("orig\n")
    (root / "data" / "del.txt").write_text("doomed\n")
    (root / "olddir").mkdir()
    (root / "olddir" / "a").write_text("a\n")
    (root / "olddir" / "b").write_text("b\n")
    return root


Runner = Callable[..., tuple[RunResult, Path]]


@pytest.fixture
def run(tmp_path: Path, rootfs: Path) -> Runner:
    """run(cmd_or_argv, lowers=None, on_output=None, tail_lines=20, **RunSpec fields)
    -> (result, upper). Each call gets a fresh upper and work dir; work must end empty."""
    counter = iter(range(1000))

    def runner(
        command: str | tuple[str, ...],
        lowers: list[Path] | None = None,
        on_output: Callable[[str], None] | None = None,
        tail_lines: int = 20,
        **fields: object,
    ) -> tuple[RunResult, Path]:
        n = next(counter)
        upper, work = tmp_path / f"upper{n}", tmp_path / f"work{n}"
        upper.mkdir()
        work.mkdir()
        argv = ("/bin/sh", "-c", command) if isinstance(command, str) else command
        fields.setdefault("env", ())
        spec = RunSpec(argv=argv, **fields)  # type: ignore[arg-type]
        try:
            result = run_step(
                lowers or [rootfs], upper, work, spec, on_output=on_output, tail_lines=tail_lines
            )
        finally:
            assert list(work.iterdir()) == [], "work dir must be left empty"
        return result, upper

    return runner


def _mounts() -> list[str]:
    return Path("/proc/self/mountinfo").read_text().splitlines()


@pytest.fixture(autouse=True)
def no_mount_leaks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Nothing under this session's temp dirs is ever mounted in our namespace (other
    processes on the machine may mount elsewhere meanwhile, so only ours are compared)."""
    base = str(tmp_path_factory.getbasetemp())
    assert [line for line in _mounts() if base in line] == []
    yield
    assert [line for line in _mounts() if base in line or "pipeline-check-" in line] == []


def tree(upper: Path) -> dict[str, str]:
    """rel path -> "dir" / "dir opaque" / "file:<text>" / "whiteout" / "link:<target>"."""
    out: dict[str, str] = {}
    for path in sorted(upper.rglob("*")):
        rel = str(path.relative_to(upper))
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            opaque = _xattr(path, "trusted.overlay.opaque") == b"y"
            out[rel] = "dir opaque" if opaque else "dir"
        elif stat.S_ISLNK(st.st_mode):
            out[rel] = f"link:{os.readlink(path)}"
        elif stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            out[rel] = "whiteout"
        else:
            out[rel] = "file:" + path.read_text()
    return out


def _xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def _pids(argv: list[str]) -> list[int]:
    """Pids of processes whose command line is exactly ``argv``."""
    want = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == want:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _find_process(argv: list[str]) -> int | None:
    pids = _pids(argv)
    return pids[0] if pids else None


def _mnt_ns_holders(ns: str) -> list[int]:
    holders = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "mnt") == ns:
                    holders.append(int(entry.name))
            except OSError:
                continue
    return holders


def _wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# --- the layer ------------------------------------------------------------------------


def test_upper_holds_exactly_the_changes(run: Runner) -> None:
    result, upper = run(
        "echo new > /data/new.txt && echo changed >> /data/mod.txt && rm /data/del.txt"
        " && rm -rf /olddir && mkdir /olddir && echo c > /olddir/c"
    )
    assert result.exit_code == 0, result
    assert tree(upper) == {
        "data": "dir",
        "data/del.txt": "whiteout",
        "data/mod.txt": "file:orig\nchanged\n",
        "data/new.txt": "file:new\n",
        "olddir": "dir opaque",
        "olddir/c": "file:c\n",
    }
    # overlay's own bookkeeping is not part of the layer; the opaque marker is
    for path in (upper, *upper.rglob("*")):
        names = os.listxattr(path, follow_symlinks=False)
        assert [n for n in names if n.startswith("trusted.overlay.")] in (
            [],
            ["trusted.overlay.opaque"],
        )


def test_trivial_step_leaves_nothing(run: Runner, rootfs: Path) -> None:
    assert not (rootfs / "proc").exists() and not (rootfs / "etc" / "resolv.conf").exists()
    result, upper = run("ls /proc/self /dev/null /etc/resolv.conf /etc/hosts > /dev/null")
    assert result.exit_code == 0, result
    assert tree(upper) == {}


def test_lower_layers_are_never_written(run: Runner, rootfs: Path) -> None:
    before = {str(p): p.lstat().st_mtime_ns for p in rootfs.rglob("*")}
    result, _ = run("echo x > /data/keep.txt; rm -rf /olddir; touch /etc/new")
    assert result.exit_code == 0
    assert {str(p): p.lstat().st_mtime_ns for p in rootfs.rglob("*")} == before
    assert (rootfs / "data" / "keep.txt").read_text() == "lower\n"


def test_two_lowers_stack_in_order(run: Runner, rootfs: Path, tmp_path: Path) -> None:
    top = tmp_path / "top"
    (top / "data").mkdir(parents=True)
    (top / "data" / "keep.txt").write_text("top\n")
    _whiteout(top / "data" / "mod.txt")
    result, upper = run(
        "cat /data/keep.txt; test -e /data/mod.txt && echo mod-visible || echo mod-hidden",
        lowers=[top, rootfs],
    )
    assert result.output_tail == ("top", "mod-hidden")
    assert tree(upper) == {}


def test_sixty_layers_with_long_paths(run: Runner, rootfs: Path, tmp_path: Path) -> None:
    parent = tmp_path / ("p" * 200) / ("q" * 200)
    layers = []
    for i in range(60):
        layer = parent / f"layer-{i:02d}-{'x' * 150}"
        (layer / "layers").mkdir(parents=True)
        (layer / "layers" / f"{i:02d}").write_text("")
        (layer / "which").write_text(f"{i:02d}\n")
        layers.append(layer)
    assert sum(len(str(p)) for p in layers) > 4 * os.sysconf("SC_PAGE_SIZE")
    result, upper = run("ls /layers | wc -l; cat /which", lowers=[*layers, rootfs])
    assert result.exit_code == 0, result
    assert result.output_tail == ("60", "00")  # 61 lowers; the top-most one wins
    assert tree(upper) == {}


def test_too_many_layers_is_a_clear_error(run: Runner, rootfs: Path) -> None:
    with pytest.raises(SandboxError, match="501 layers"):
        run("true", lowers=[rootfs] * 501)


# --- what the step sees -----------------------------------------------------------------


def test_env_is_exact_with_default_path_and_home(run: Runner) -> None:
    result, _ = run(("/bin/env",), env=(("A", "1"), ("B", "two words")))
    assert sorted(result.output_tail) == sorted(
        ["A=1", "B=two words", f"PATH={DEFAULT_PATH}", "HOME=/root"]
    )
    result, _ = run(("/bin/env",), env=(("PATH", "/bin"), ("HOME", "/x")))
    assert sorted(result.output_tail) == ["HOME=/x", "PATH=/bin"]
    big = "x" * 100_000  # the spec travels in a file, not argv: no size trouble
    result, _ = run("echo ${#BIG}", env=(("BIG", big),))
    assert result.output_tail == ("100000",)


def test_user_workdir_and_home(run: Runner) -> None:
    result, upper = run(
        "id -u; id -g; id -G; echo $HOME; pwd; touch mine", user="app", workdir="/srv/app"
    )
    assert result.exit_code == 0, result
    assert result.output_tail == ("1000", "1000", "1000 2000", "/home/app", "/srv/app")
    # creating the missing workdir is part of the layer, owned by the step's user
    assert tree(upper) == {"srv": "dir", "srv/app": "dir", "srv/app/mine": "file:"}
    assert (upper / "srv" / "app").stat().st_uid == 1000
    assert (upper / "srv" / "app" / "mine").stat().st_uid == 1000


def test_numeric_user_and_existing_workdir(run: Runner) -> None:
    result, upper = run("id -u; id -g; pwd", user="4242:2000", workdir="/data")
    assert result.output_tail == ("4242", "2000", "/data")
    assert tree(upper) == {}


def test_unknown_user_is_a_setup_error(run: Runner) -> None:
    with pytest.raises(SandboxError, match="nobody-here"):
        run("true", user="nobody-here")


def test_namespaces_proc_dev_hostname_resolv(run: Runner) -> None:
    script = textwrap.dedent(
        """
        echo pid=$$
        hostname
        ls /proc | grep -c '^[0-9]'
        echo hi > /dev/null && echo null-ok
        head -c 5 /dev/urandom | wc -c
        echo x > /dev/shm/x && echo shm-ok
        test -c /dev/tty && test -L /dev/fd && test -d /dev/pts && echo dev-ok
        cat /etc/resolv.conf
        (echo x >> /etc/resolv.conf) 2>/dev/null || echo resolv-ro
        """
    )
    result, upper = run(script, hostname="builder", tail_lines=50)
    out = list(result.output_tail)
    assert out[0] == "pid=2"  # pid 1 is the sandbox's init
    assert out[1] == "builder"
    assert int(out[2]) <= 4  # only the sandbox's own processes
    assert out[3:7] == ["null-ok", "5", "shm-ok", "dev-ok"]
    assert "\n".join(out[7:-1]) == Path("/etc/resolv.conf").read_text().rstrip("\n")
    assert out[-1] == "resolv-ro"
    assert tree(upper) == {}


def test_no_resolv_when_disabled(run: Runner) -> None:
    result, upper = run("test -e /etc/resolv.conf && echo yes || echo no", resolv=False)
    assert result.output_tail == ("no",)
    assert tree(upper) == {}


# --- exit codes and output -------------------------------------------------------------


def test_exit_code_tail_and_streaming(run: Runner) -> None:
    seen: list[str] = []
    result, _ = run(
        "for i in $(seq 1 30); do echo line$i; done; echo oops >&2; exit 3",
        on_output=seen.append,
        tail_lines=5,
    )
    assert result.exit_code == 3
    assert seen == [f"line{i}" for i in range(1, 31)] + ["oops"]
    assert result.output_tail == ("line27", "line28", "line29", "line30", "oops")
    assert result.seconds > 0


def test_long_lines_are_cut(run: Runner) -> None:
    result, _ = run("head -c 40000 /dev/zero | tr '\\0' a")
    assert [len(line) for line in result.output_tail] == [16384, 16384, 7232]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("/no/such/binary", "arg"), "/no/such/binary"),
        (("no-such-command",), "not found in PATH"),
        (("/bin/sh", "-c", "no-such-command"), "not found"),
    ],
)
def test_missing_binary_is_127(run: Runner, argv: tuple[str, ...], needle: str) -> None:
    result, _ = run(argv)
    assert result.exit_code == 127
    assert needle in "\n".join(result.output_tail)


def test_killed_by_signal_is_128_plus_n(run: Runner) -> None:
    result, _ = run("kill -TERM $$")
    assert result.exit_code == 128 + signal.SIGTERM


# --- placeholders, caches, secrets -------------------------------------------------------


def test_placeholders_go_but_step_changes_stay(run: Runner, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    result, upper = run(
        "echo note > /run/note && echo extra > /etc/extra && cat /run/secrets/token",
        binds=(BindMount(secret, "/run/secrets/token"),),
    )
    assert result.output_tail == ("s3cret",)
    # /run was a placeholder but the step wrote into it; /etc was copied up to hold the
    # resolv.conf/hosts mount points and the step wrote into it too
    assert tree(upper) == {
        "etc": "dir",
        "etc/extra": "file:extra\n",
        "run": "dir",
        "run/note": "file:note\n",
    }


def test_placeholder_changed_by_the_step_stays(run: Runner, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    result, upper = run("chmod 700 /run", binds=(BindMount(secret, "/run/secrets/token"),))
    assert result.exit_code == 0
    assert tree(upper) == {"run": "dir"}
    assert stat.S_IMODE((upper / "run").stat().st_mode) == 0o700


def test_cache_bind_persists_in_cache_not_layer(run: Runner, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    bind = BindMount(cache, "/root/.cache/pip", readonly=False)
    result, upper = run("echo wheel > /root/.cache/pip/flask.whl", binds=(bind,))
    assert result.exit_code == 0, result
    assert (cache / "flask.whl").read_text() == "wheel\n"
    assert tree(upper) == {}
    result, upper = run("cat /root/.cache/pip/flask.whl", binds=(bind,))
    assert result.output_tail == ("wheel",)
    assert tree(upper) == {}


def test_secret_readable_read_only_and_never_in_layer(run: Runner, tmp_path: Path) -> None:
    secret = tmp_path / "ca.pem"
    secret.write_text("-----BEGIN CERTIFICATE-----\nSECRET-CA-BYTES\n")
    secret.chmod(0o644)
    bind = BindMount(secret, "/etc/ssl/ca.pem")
    result, upper = run(
        "tail -n1 /etc/ssl/ca.pem; (cp /etc/ssl/ca.pem /copy) 2>/dev/null || echo no-copy",
        binds=(bind,),
        user="app",
    )
    assert result.output_tail == ("SECRET-CA-BYTES", "no-copy")
    assert tree(upper) == {}
    result, upper = run("(echo x >> /etc/ssl/ca.pem) 2>&1; rm /etc/ssl/ca.pem", binds=(bind,))
    assert result.exit_code != 0
    assert "Read-only file system" in result.output_tail[0]
    assert secret.read_text().endswith("SECRET-CA-BYTES\n")  # unchanged on the host
    assert tree(upper) == {}


def test_mount_targets_resolve_inside_the_rootfs(run: Runner, rootfs: Path, tmp_path: Path) -> None:
    top = tmp_path / "top"
    (top / "etc").mkdir(parents=True)
    escape = tmp_path / "escape"
    (top / "etc" / "hosts").symlink_to(f"/../..{escape}/hosts")
    result, upper = run("cat /etc/hosts", lowers=[top, rootfs])
    assert "\n".join(result.output_tail) == Path("/etc/hosts").read_text().rstrip("\n")
    assert not escape.exists()  # the mount point was made inside the rootfs, then removed
    assert tree(upper) == {}


def test_dangling_resolv_symlink_gets_placeholders(
    run: Runner, rootfs: Path, tmp_path: Path
) -> None:
    top = tmp_path / "top"  # as in Ubuntu images
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "resolv.conf").symlink_to("../run/systemd/resolve/stub-resolv.conf")
    result, upper = run("cat /etc/resolv.conf; ls /run/systemd/resolve", lowers=[top, rootfs])
    assert result.output_tail[-1] == "stub-resolv.conf"
    assert tree(upper) == {}


def test_commas_and_colons_in_paths(rootfs: Path, tmp_path: Path) -> None:
    odd = tmp_path / "a,b:c"
    lower, upper, work = odd / "lo:w,er", odd / "up,p:er", odd / "wo:rk"
    shutil.copytree(rootfs / "etc", lower / "etc")
    for d in (upper, work):
        d.mkdir()
    spec = RunSpec(argv=("/bin/busybox", "cat", "/etc/group"), env=(), resolv=False)
    result = run_step([lower, rootfs], upper, work, spec)
    assert result.exit_code == 0, result
    assert result.output_tail[-1] == "extra:x:2000:app"
    assert tree(upper) == {}


def test_bind_onto_a_directory_with_a_file_is_a_setup_error(run: Runner, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x")
    with pytest.raises(SandboxError, match="is a directory"):
        run("true", binds=(BindMount(secret, "/data"),))


def test_setup_errors_are_sandbox_errors(run: Runner, rootfs: Path, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="does not exist"):
        run("true", binds=(BindMount(tmp_path / "missing", "/x"),))
    with pytest.raises(SandboxError, match="network"):
        run("true", network="bridge")
    with pytest.raises(SandboxError, match="hostname"):
        run("true", hostname="h" * 65)
    work = tmp_path / "dirty-work"
    (work / "junk").mkdir(parents=True)
    upper = tmp_path / "u"
    upper.mkdir()
    with pytest.raises(SandboxError, match="not empty"):
        run_step([rootfs], upper, work, RunSpec(argv=("true",), env=()))


# --- network ----------------------------------------------------------------------------


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A TCP listener on the host's 127.0.0.1 that accepts and closes connections."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"hello\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_network_default_is_the_host_network(run: Runner, host_listener: int) -> None:
    result, _ = run(f"nc -w 2 127.0.0.1 {host_listener} </dev/null")
    assert result.output_tail == ("hello",)


def test_network_none_reaches_only_loopback(run: Runner, host_listener: int) -> None:
    result, _ = run(
        f"nc -w 2 127.0.0.1 {host_listener} </dev/null && echo reached || echo blocked;"
        " ip -o link | wc -l; ip -o link show lo | grep -c ',UP'",
        network="none",
    )
    assert result.output_tail[-3:] == ("blocked", "1", "1")


# --- killing and leaking ------------------------------------------------------------------


def test_no_host_mounts_while_a_step_runs(run: Runner, tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def look(line: str) -> None:
        if line == "ready":
            seen.append([m for m in _mounts() if str(tmp_path) in m])

    result, _ = run("echo ready; sleep 0.2", on_output=look)
    assert result.exit_code == 0
    assert seen == [[]]


def test_killing_the_step_process(run: Runner) -> None:
    victim: list[int] = []

    def kill(line: str) -> None:
        if line == "ready":
            assert _wait_until(lambda: _find_process(["sleep", "71.5"]) is not None)
            pid = _find_process(["sleep", "71.5"])
            assert pid is not None
            victim.append(pid)
            os.kill(pid, signal.SIGKILL)

    result, upper = run("echo ready; exec sleep 71.5", on_output=kill)
    assert victim and result.exit_code == 128 + signal.SIGKILL
    assert tree(upper) == {}


def test_killing_the_sandbox_kills_the_step(run: Runner) -> None:
    state: dict[str, object] = {}

    def kill(line: str) -> None:
        if line != "ready":
            return
        assert _wait_until(lambda: _find_process(["sleep", "72.5"]) is not None)
        pid = _find_process(["sleep", "72.5"])
        assert pid is not None
        state["ns"] = os.readlink(f"/proc/{pid}/ns/mnt")
        for entry in Path("/proc").iterdir():  # stage 1: our child, pipeline.sandbox.init
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == os.getpid() and b"pipeline.sandbox.init" in cmdline:
                os.kill(int(entry.name), signal.SIGKILL)
                state["killed"] = True

    result, _ = run("echo ready; sleep 72.5; echo survived", on_output=kill)
    assert state.get("killed")
    assert result.exit_code == 128 + signal.SIGKILL
    assert "survived" not in result.output_tail
    assert _find_process(["sleep", "72.5"]) is None
    assert _mnt_ns_holders(str(state["ns"])) == []


def test_kill_all_stops_running_steps(run: Runner) -> None:
    results: list[RunResult] = []
    threads = [
        threading.Thread(target=lambda: results.append(run("sleep 74.5")[0])) for _ in range(2)
    ]
    for t in threads:
        t.start()
    assert _wait_until(lambda: len(_pids(["sleep", "74.5"])) == 2)
    assert kill_all() == 2
    for t in threads:
        t.join()
    assert [r.exit_code for r in results] == [137, 137]
    assert _pids(["sleep", "74.5"]) == []


CALLER = """
import sys
from pathlib import Path
from pipeline.sandbox.api import RunSpec
from pipeline.sandbox.linux import run_step

lower, upper, work = map(Path, sys.argv[1:4])
def show(line):
    print(line, flush=True)
spec = RunSpec(argv=("/bin/sh", "-c", "echo ready; sleep 73.5"), env=())
run_step([lower], upper, work, spec, on_output=show)
"""


def test_sigkill_of_the_caller_kills_the_step(rootfs: Path, tmp_path: Path) -> None:
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    caller = subprocess.Popen(
        [sys.executable, "-c", CALLER, str(rootfs), str(upper), str(work)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert caller.stdout is not None
        assert caller.stdout.readline().strip() == "ready"
        assert _wait_until(lambda: _find_process(["sleep", "73.5"]) is not None)
        pid = _find_process(["sleep", "73.5"])
        assert pid is not None
        ns = os.readlink(f"/proc/{pid}/ns/mnt")
        assert ns != os.readlink("/proc/self/ns/mnt")
        caller.kill()
        caller.wait()
        assert _wait_until(lambda: _find_process(["sleep", "73.5"]) is None)
        assert _wait_until(lambda: _mnt_ns_holders(ns) == [])
    finally:
        caller.kill()
        caller.wait()


def test_parallel_steps(run: Runner) -> None:
    results: list[RunResult] = []

    def one(i: int) -> None:
        result, upper = run(f"echo {i} > /f; cat /f")
        assert tree(upper) == {"f": f"file:{i}\n"}
        results.append(result)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.output_tail for r in results) == [(str(i),) for i in range(4)]


# --- run_interactive and check_host ------------------------------------------------------------

SERVER = """
import sys
from pathlib import Path
from pipeline.sandbox.api import RunSpec
from pipeline.sandbox.linux import run_interactive

lower, www, upper, work, port = sys.argv[1:6]
spec = RunSpec(argv=("httpd", "-f", "-p", "127.0.0.1:" + port, "-h", "/www"), env=())
code = run_interactive([Path(www), Path(lower)], Path(upper), Path(work), spec)
print("exit", code, flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_interactive_serves_and_stops(rootfs: Path, tmp_path: Path, sig: int) -> None:
    www = tmp_path / "www-layer"
    (www / "www").mkdir(parents=True)
    (www / "www" / "index.html").write_text("hello from the sandbox\n")
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(rootfs), str(www), str(upper), str(work), str(port)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        body = ""

        def answered() -> bool:
            nonlocal body
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as resp:
                    body = resp.read().decode()
                return True
            except OSError:
                return False

        assert _wait_until(answered, timeout=10)
        assert body == "hello from the sandbox\n"
        server.send_signal(sig)
        out, _ = server.communicate(timeout=10)
        assert out.strip() == f"exit {128 + sig}"
        assert server.returncode == 0
        assert _find_process(["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"]) is None
        assert list(work.iterdir()) == []
        assert tree(upper) == {}
    finally:
        server.kill()
        server.wait()


def test_check_host_passes_here() -> None:
    check_host()
    check_host()  # cached


# --- kill_all's contract ------------------------------------------------------------------


def test_kill_all_returns_once_every_process_and_namespace_is_gone(run: Runner) -> None:
    """Each step leaves daemons behind (own session, own process group, stdout closed);
    when kill_all returns, none of them and nobody in the steps' mount namespaces is left."""
    results: list[RunResult] = []
    namespaces: list[str] = []
    script = (
        "setsid sleep 75.5 >/dev/null 2>&1 & (trap '' TERM INT HUP; exec sleep 75.6) &"
        " echo ready; exec sleep 75.7"
    )

    def watch(line: str) -> None:
        if line == "ready":
            assert _wait_until(lambda: len(_pids(["sleep", "75.7"])) > len(namespaces))
            namespaces.append(os.readlink(f"/proc/{_pids(['sleep', '75.7'])[-1]}/ns/mnt"))

    threads = [
        threading.Thread(target=lambda: results.append(run(script, on_output=watch)[0]))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    assert _wait_until(lambda: len(_pids(["sleep", "75.6"])) == 2 and len(namespaces) == 2)
    started = time.monotonic()
    assert kill_all() == 2
    took = time.monotonic() - started
    left = [_pids(["sleep", f"75.{i}"]) for i in (5, 6, 7)]
    holders = [_mnt_ns_holders(ns) for ns in namespaces]
    for t in threads:
        t.join()
    assert left == [[], [], []]
    assert holders == [[], []]
    assert took < 0.5, f"kill_all took {took:.3f} s"
    assert [r.exit_code for r in results] == [137, 137]


def test_kill_all_refuse_new_until_accept_new(run: Runner) -> None:
    from pipeline.sandbox.linux import accept_new

    assert kill_all(refuse_new=True) == 0
    try:
        with pytest.raises(SandboxError, match="stopped"):
            run("true")
    finally:
        accept_new()
    assert run("echo again")[0].output_tail == ("again",)


INTERRUPTED = """
import signal, sys, time
from pathlib import Path
from pipeline.sandbox.api import RunSpec
from pipeline.sandbox.linux import kill_all, run_step

lower, upper, work = map(Path, sys.argv[1:4])
def stop(signum, frame):
    started = time.monotonic()
    count = kill_all(refuse_new=True)
    print(f"stopped {count} in {time.monotonic() - started:.3f}", flush=True)
signal.signal(signal.SIGINT, stop)
script = "setsid sleep 76.5 >/dev/null 2>&1 & echo ready; sleep 76.6"
spec = RunSpec(argv=("/bin/sh", "-c", script), env=())
result = run_step([lower], upper, work, spec, on_output=lambda l: print(l, flush=True))
print("exit", result.exit_code, flush=True)
"""


def test_kill_all_from_a_sigint_handler(rootfs: Path, tmp_path: Path) -> None:
    """What a build's Ctrl-C does: SIGINT in the main thread while it reads a step's
    output; the handler's kill_all ends the step, run_step returns 137."""
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    caller = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED, str(rootfs), str(upper), str(work)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert caller.stdout is not None
        assert caller.stdout.readline().strip() == "ready"
        assert _wait_until(lambda: _find_process(["sleep", "76.5"]) is not None)
        started = time.monotonic()
        caller.send_signal(signal.SIGINT)
        out, _ = caller.communicate(timeout=10)
        took = time.monotonic() - started
        lines = out.splitlines()
        assert lines[0].startswith("stopped 1 in ")
        assert lines[-1] == "exit 137"
        assert took < 2.0, took
        assert _find_process(["sleep", "76.5"]) is None
        assert _find_process(["sleep", "76.6"]) is None
        assert list(work.iterdir()) == []
    finally:
        caller.kill()
        caller.wait()


def test_step_stdin_is_the_rootfs_null_device(run: Runner) -> None:
    result, _ = run("readlink /proc/self/fd/0; stat -L -c '%d %i %t:%T' /dev/null /proc/self/fd/0")
    assert result.output_tail[0] == "/dev/null"
    assert result.output_tail[1] == result.output_tail[2]  # the same inode: ours
    assert result.output_tail[1].endswith(" 1:3")
    host = os.stat("/dev/null")
    assert result.output_tail[1].split()[:2] != [str(host.st_dev), str(host.st_ino)]


def test_nothing_is_imported_from_the_image(run: Runner, rootfs: Path, tmp_path: Path) -> None:
    """After the pivot the sandbox's Python must never look into the image for a module:
    a hostile image can plant one at the host's stdlib paths. Plant one everywhere
    sys.path points and run steps through the code paths after the pivot; a planted
    module that ran would say so on the step's output."""
    top = tmp_path / "evil"
    for entry in sys.path:
        if entry.startswith("/") and os.path.isdir(entry):
            target = top / entry.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            for name in ("warnings", "signal", "subprocess", "traceback", "linecache"):
                (target / f"{name}.py").write_text("import os\nos.write(2, b'IMPORTED\\n')\n")
    for user in ("", "app"):  # a USER imports more before the pivot: both paths
        for argv in (("no-such-command",), ("/bin/sh", "-c", "exit 3")):
            result, _ = run(argv, lowers=[top, rootfs], user=user)
            assert "IMPORTED" not in result.output_tail
            assert result.exit_code in (127, 3), result
