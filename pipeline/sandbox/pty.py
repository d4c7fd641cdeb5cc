"""The caller's end of a sandbox's terminal (``pipeline run -t``): receives the pty
master the sandbox's pid 1 made in its own devpts, and relays bytes between it and the
caller's stdin/stdout, the caller's terminal in raw mode meanwhile (as ``docker run
-it`` does), so keys such as Ctrl-C reach the command's own terminal and the command
never holds the caller's. Imported by :mod:`pipeline.sandbox.linux` only."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import termios
import tty
from collections.abc import Iterator

CHUNK = 65536
EOF_BYTE = b"\x04"  # what a terminal sends for end of input (VEOF, ^D)


def console_pair() -> tuple[socket.socket, int]:
    """A connected unix socket pair: ours, and the fd the sandbox gets (inheritable)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fd = theirs.detach()
    os.set_inheritable(fd, True)
    return ours, fd


def receive_master(sock: socket.socket) -> int | None:
    """The pty master the sandbox sent, or None when it closed the socket without one
    (setup failed: the sandbox's status says why). Closes ``sock``."""
    with sock:
        _msg, fds, _flags, _addr = socket.recv_fds(sock, 1, 1)
    for extra in fds[1:]:
        os.close(extra)
    return fds[0] if fds else None


def copy_window_size(master: int, source: int = 0) -> None:
    """Give the pty the size of the caller's terminal (on fd ``source``), if it has one;
    the kernel then sends SIGWINCH to the command's foreground group."""
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """``fd``'s terminal in raw mode for the duration (nothing when it is no terminal)."""
    try:
        saved = termios.tcgetattr(fd)
    except (OSError, termios.error):
        yield
        return
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def relay(master: int, stdin_fd: int | None, stdout_fd: int) -> None:
    """Copy ``stdin_fd`` (None: nothing) to ``master`` and ``master`` to ``stdout_fd``
    until every process on the pty's side is gone (the master reads EIO), everything
    they wrote copied out. End of ``stdin_fd`` sends ^D once. Never blocks on a write
    to the pty: input waits in a buffer until the pty takes it."""
    copy_window_size(master, stdin_fd if stdin_fd is not None else 0)
    os.set_blocking(master, False)
    pending = b""
    reading = stdin_fd is not None
    with raw_mode(stdin_fd) if stdin_fd is not None else contextlib.nullcontext():
        while True:
            readers = [master] + ([stdin_fd] if reading and stdin_fd is not None else [])
            writers = [master] if pending else []
            ready_r, ready_w, _ = select.select(readers, writers, [])
            if master in ready_r:
                try:
                    data = os.read(master, CHUNK)
                except BlockingIOError:
                    data = None
                except OSError as exc:
                    if exc.errno == errno.EIO:
                        return
                    raise
                if data == b"":
                    return
                if data:
                    _write_all(stdout_fd, data)
            if stdin_fd is not None and stdin_fd in ready_r:
                data = os.read(stdin_fd, CHUNK)
                if data:
                    pending += data
                else:
                    reading = False
                    pending += EOF_BYTE
            if master in ready_w and pending:
                try:
                    pending = pending[os.write(master, pending) :]
                except BlockingIOError:
                    pass
                except OSError as exc:
                    if exc.errno == errno.EIO:
                        pending = b""
                    else:
                        raise


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data) :]
        except BlockingIOError:
            select.select([], [fd], [])
