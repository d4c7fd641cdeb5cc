"""A tiny TCP forwarder for `pipeline run -p HOST_PORT:PORT`: host 127.0.0.1:HOST_PORT
(or the given address) -> 127.0.0.1:PORT, where the sandboxed app listens on the host's
network. Threads only; ``close()`` stops accepting and closes every connection."""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass

from pipeline.errors import UsageError


@dataclass(frozen=True)
class PortMap:
    host_addr: str
    host_port: int
    port: int

    @classmethod
    def parse(cls, text: str) -> PortMap:
        """``"8080:5000"``, ``"0.0.0.0:8080:5000"`` or ``"5000"`` (same port both sides)."""
        parts = text.split(":")
        try:
            if len(parts) == 1:
                return cls("127.0.0.1", int(parts[0]), int(parts[0]))
            if len(parts) == 2:
                return cls("127.0.0.1", int(parts[0]), int(parts[1]))
            if len(parts) == 3:
                return cls(parts[0], int(parts[1]), int(parts[2]))
        except ValueError:
            pass
        raise UsageError(f"-p {text!r}: expected [ADDR:]HOST_PORT:PORT")


class Forwarder:
    def __init__(self, mapping: PortMap) -> None:
        self.mapping = mapping
        self.listener = socket.create_server((mapping.host_addr, mapping.host_port))
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.mapping.port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()
