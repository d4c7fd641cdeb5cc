"""`pipeline run` takes docker's common flags, each really run on the busybox base in
the real sandbox: -e/--env-file, -v (ro refused a write, rw reaches the host), -w, -u,
--entrypoint, --name, --network, -p, --rm, -it under a real pty (Python's pty module
as the user's terminal); unknown flags are usage errors; exit codes pass through; the
sandbox's containment holds with a terminal too."""

from __future__ import annotations

import os
import pty
import select
import socket
import subprocess
import sys
import termios
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.cli.container import (
    apply_env_options,
    command_line,
    parse_volume,
    read_env_file,
)
from pipeline.errors import UsageError
from tests.conftest import Cli

SPEC = """
app "ep" {
  from       = "busybox:latest"
  entrypoint = ["/bin/sh", "-c", "echo from-entrypoint; exit 3"]
  env        = { IMAGE_VAR = "image" }
  workdir    = "/srv"
}
"""


@pytest.fixture
def store(busybox_store: Cli, tmp_path: Path) -> Cli:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "ep.hcl").write_text(SPEC)
    busybox_store("build-all", "--progress", "plain")
    return busybox_store


def lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return proc.stdout.splitlines()


# --- flags, for real -------------------------------------------------------------------


def test_env_and_env_file(store: Cli, tmp_path: Path) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_text("# a comment\n\nFROM_FILE=file value\nOVERRIDDEN=file\nHOST_ONE\n")
    proc = store(
        "run",
        "--env-file",
        str(env_file),
        "-e",
        "X=1",
        "-e",
        "OVERRIDDEN=flag",
        "-e",
        "HOST_TWO",
        "-e",
        "IMAGE_VAR",  # not set on the host: unset, as docker does
        "--entrypoint",
        "env",
        "ep",
        env={"HOST_ONE": "h1", "HOST_TWO": "h2"},
    )
    got = set(lines(proc))
    assert {"X=1", "FROM_FILE=file value", "OVERRIDDEN=flag", "HOST_ONE=h1", "HOST_TWO=h2"} <= got
    assert not any(line.startswith("IMAGE_VAR=") for line in got)
    # without -e the image's own env is there
    assert "IMAGE_VAR=image" in lines(store("run", "--entrypoint", "env", "ep"))


def test_volume_ro_refuses_a_write_rw_reaches_the_host(store: Cli, tmp_path: Path) -> None:
    host = tmp_path / "shared"
    host.mkdir()
    (host / "in.txt").write_text("from the host\n")
    ro = store(
        "run",
        "-v",
        f"{host}:/data:ro",
        "busybox",
        "sh",
        "-c",
        "cat /data/in.txt; echo x > /data/out.txt",
        check=False,
    )
    assert ro.returncode != 0
    assert "from the host" in ro.stdout
    assert "Read-only file system" in ro.stderr
    assert not (host / "out.txt").exists()
    store("run", "-v", f"{host}:/data", "busybox", "sh", "-c", "echo written > /data/out.txt")
    assert (host / "out.txt").read_text() == "written\n"
    # a relative host path (from the caller's cwd) and a file bind
    rel = store("run", "-v", "./shared/in.txt:/etc/motd:ro", "busybox", "cat", "/etc/motd")
    assert rel.stdout == "from the host\n"


def test_workdir_user_name_hostname(store: Cli) -> None:
    assert store("run", "-w", "/tmp", "busybox", "pwd").stdout == "/tmp\n"
    assert store("run", "-w", "/new/dir", "busybox", "pwd").stdout == "/new/dir\n"
    assert store("run", "--entrypoint", "pwd", "ep").stdout == "/srv\n"  # the image's
    ids = store("run", "-u", "1000", "busybox", "sh", "-c", "id -u; id -g").stdout
    assert ids == "1000\n1000\n"
    ids = store("run", "-u", "1000:50", "busybox", "sh", "-c", "id -u; id -g").stdout
    assert ids == "1000\n50\n"
    assert store("run", "--name", "web-1", "busybox", "hostname").stdout == "web-1\n"
    assert store("run", "--hostname", "h", "busybox", "hostname").stdout == "h\n"
    assert store("run", "--rm", "busybox", "true").returncode == 0


def test_entrypoint_override_and_exit_codes_pass_through(store: Cli) -> None:
    plain = store("run", "ep", check=False)
    assert (plain.returncode, plain.stdout) == (3, "from-entrypoint\n")
    # --entrypoint replaces it and drops the image's cmd; the rest are its arguments
    over = store("run", "--entrypoint", "/bin/echo", "ep", "hi", "there")
    assert over.stdout == "hi there\n"
    cleared = store("run", "--entrypoint", "", "ep", "sh", "-c", "exit 9", check=False)
    assert cleared.returncode == 9
    assert store("run", "busybox", "sh", "-c", "exit 7", check=False).returncode == 7
    missing = store("run", "busybox", "no-such-command", check=False)
    assert missing.returncode == 127 and "no-such-command" in missing.stderr
    # a leading -- before the command is dropped; flags after the image are the command's
    assert store("run", "busybox", "--", "echo", "-n", "x").stdout == "x"
    assert store("run", "busybox", "ls", "-d", "/").stdout == "/\n"
    # one of our options after the image goes to the command too, with a note
    late = store("run", "busybox", "-e", "X=1", check=False)
    assert late.returncode == 127
    assert "note: -e comes after the image name" in late.stderr


def test_network_none_has_only_loopback_host_has_more(store: Cli) -> None:
    none = store("run", "--network", "none", "busybox", "ls", "/sys/class/net").stdout.split()
    assert none == ["lo"]
    host = store("run", "--network", "host", "busybox", "ls", "/sys/class/net").stdout.split()
    assert sorted(host) == sorted(os.listdir("/sys/class/net"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_publish_forwards_to_a_server_in_the_sandbox(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("served\n")
    inner, outer = free_port(), free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "pipeline", "run", "-p", f"{outer}:{inner}"),
            *("-v", f"{www}:/www:ro", "busybox"),
            *("httpd", "-f", "-p", f"127.0.0.1:{inner}", "-h", "/www"),
        ],
        cwd=tmp_path,
        env=dict(os.environ, PIPELINE_STORE=str(store_path)),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{outer}/", timeout=2) as r:
                    assert r.read() == b"served\n"
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
    finally:
        proc.terminate()
        assert proc.wait(30) in (0, 143)


# --- -it under a real terminal ---------------------------------------------------------


class Terminal:
    """`pipeline run ...` on the slave side of a pty we hold, as a user's terminal."""

    def __init__(self, store: Path, cwd: Path, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.saved = termios.tcgetattr(slave)
        self.slave = os.dup(slave)  # to look at the terminal's mode afterwards
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=dict(os.environ, PIPELINE_STORE=str(store), TERM="dumb"),
            start_new_session=True,
        )
        os.close(slave)
        self.seen = b""

    def expect(self, needle: bytes, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} not seen in {self.seen!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                assert chunk, f"terminal closed before {needle!r}: {self.seen!r}"
                self.seen += chunk
        head, _, self.seen = self.seen.partition(needle)
        return head

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> int:
        code = self.proc.wait(30)
        os.close(self.master)
        os.close(self.slave)
        return code


def test_it_gives_a_real_terminal_with_prompt_echo_and_exit_code(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    term = Terminal(store_path, tmp_path, "-it", "busybox", "sh")
    try:
        term.expect(b"# ")  # an interactive shell's prompt: it saw a terminal
        term.send(b"echo $((6*7))\r")
        term.expect(b"echo $((6*7))")  # the terminal echoes what was typed
        term.expect(b"42")
        term.expect(b"# ")
        # its own terminal, from the sandbox's devpts; a session with a controlling tty
        term.send(b"tty; ls /dev/pts; : </dev/tty && echo tty-$((1+1))\r")
        out = term.expect(b"tty-2\r\n")
        assert b"/dev/pts/0" in out and b"ptmx" in out
        term.expect(b"# ")
        # stty size: the window size of the caller's terminal came along
        term.send(b"stty size\r")
        term.expect(b"# ")
        # Ctrl-C reaches the command's terminal (raw relay): sleep is interrupted
        term.send(b"sleep 30\r")
        time.sleep(0.5)
        started = time.monotonic()
        term.send(b"\x03")
        term.expect(b"# ")
        assert time.monotonic() - started < 10
        term.send(b"exit 5\r")
    except BaseException:
        term.proc.kill()
        raise
    assert term.proc.wait(30) == 5
    # the caller's terminal is back in the mode it had (raw mode undone)
    assert termios.tcgetattr(term.slave) == term.saved
    term.close()


def test_tty_keeps_the_sandbox_boundary(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    """With a terminal the step is confined exactly as without: same capabilities,
    seccomp mode, masked /proc paths, no host /dev, and TIOCSTI refused."""
    probe = (
        "grep -E '^(CapEff|CapBnd|CapAmb|Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status;"
        " wc -c < /proc/keys; ls /dev | tr '\\n' ' '; echo; echo probe-done"
    )
    plain = busybox_store("run", "busybox", "sh", "-c", probe).stdout.splitlines()
    term = Terminal(store_path, tmp_path, "-t", "busybox", "sh", "-c", probe)
    try:
        out = term.expect(b"probe-done").decode().replace("\r", "").splitlines()
    finally:
        term.proc.kill()
        term.close()
    assert [line for line in out if line] == [line for line in plain[:-1] if line]
    assert "0" in out  # /proc/keys masked by /dev/null
    assert any(line.startswith("Seccomp:\t2") for line in out)


def test_it_without_a_terminal_is_a_usage_error(busybox_store: Cli) -> None:
    proc = busybox_store("run", "-it", "busybox", "sh", check=False)
    assert proc.returncode == 2
    assert "not a terminal" in proc.stderr


def test_t_without_i_reads_no_input(busybox_store: Cli, store_path: Path, tmp_path: Path) -> None:
    script = "sleep 1; read -t 2 x; echo got:$x:; [ -t 0 ] && [ -t 1 ] && echo both-ttys"
    term = Terminal(store_path, tmp_path, "-t", "busybox", "sh", "-c", script)
    try:
        term.send(b"typed\r")
        term.expect(b"got::")  # stdin not attached: what was typed never reaches it
        term.expect(b"both-ttys")  # yet its fds 0 and 1 are a terminal (docker's -t)
    finally:
        assert term.close() == 0


# --- usage errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-d", "busybox"), "No such option '-d'"),
        (("--privileged", "busybox"), "No such option '--privileged'"),
        (("-x", "busybox", "true"), "No such option '-x'"),
        (("--network", "bridge", "busybox"), "'bridge' is not one of"),
        (("-v", "data:/data", "busybox"), "is not a path"),
        (("-v", "/nonexistent-xyz:/data", "busybox"), "no such file or directory"),
        (("-v", "/tmp:/proc/x", "busybox"), "cannot be covered"),
        (("-v", "/tmp:/data:rx", "busybox"), "the options are ro or rw"),
        (("-e", "=x", "busybox"), "expected NAME=VALUE"),
        (("--env-file", "/nonexistent-xyz", "busybox"), "/nonexistent-xyz: --env-file"),
        (("--network", "none", "-p", "80:80", "busybox"), "-p needs the host network"),
        (("--name", "bad name", "busybox"), "--name 'bad name'"),
        (("-w", "rel", "busybox", "true"), "must be absolute"),
    ],
)
def test_bad_flags_are_usage_errors(
    busybox_store: Cli, args: tuple[str, ...], message: str
) -> None:
    proc = busybox_store("run", *args, check=False)
    assert proc.returncode == 2, proc
    assert message in proc.stderr
    assert "no such image" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# --- the pure parts --------------------------------------------------------------------


def test_command_line_follows_docker() -> None:
    ep, cmd = ("/entry", "a"), ("default",)
    assert command_line(ep, cmd, None, ()) == ["/entry", "a", "default"]
    assert command_line(ep, cmd, None, ("x",)) == ["/entry", "a", "x"]
    assert command_line(ep, cmd, "/other", ()) == ["/other"]
    assert command_line(ep, cmd, "/other", ("x",)) == ["/other", "x"]
    assert command_line(ep, cmd, "", ("x", "y")) == ["x", "y"]
    assert command_line(None, None, None, ()) == []


def test_env_rules(tmp_path: Path) -> None:
    assert apply_env_options({"A": "1"}, ["B=2", "A", "C"], {"C": "c"}) == {"B": "2", "C": "c"}
    env_file = tmp_path / "e"
    env_file.write_text("  # c\nA='quoted stays'\nB=\nC\nD\n")
    assert read_env_file(env_file, {"C": "3"}) == {"A": "'quoted stays'", "B": "", "C": "3"}
    env_file.write_text("OK=1\nbad name=2\n")
    with pytest.raises(UsageError, match=r"e:2: expected NAME=VALUE"):
        read_env_file(env_file, {})


def test_parse_volume(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    bind = parse_volume(f"{tmp_path}/d:/data//x/:ro", Path("/"))
    assert (bind.source, bind.target, bind.readonly) == (tmp_path / "d", "/data/x", True)
    bind = parse_volume("./d:/data:rw", tmp_path)
    assert (bind.source, bind.readonly) == (tmp_path / "d", False)
    for bad in ("/a", "a:b:c:d", f"{tmp_path}:/", f"{tmp_path}:rel", f"{tmp_path}:/sys"):
        with pytest.raises(UsageError):
            parse_volume(bad, tmp_path)
