"""Test helpers for registry tests: a real CNCF distribution server (Debian's
``docker-registry``) on 127.0.0.1 with temp config and storage (anonymous, htpasswd or
bearer-token auth), a counting / fault-injecting reverse proxy and a small token
service that signs JWTs with openssl. Everything listens on 127.0.0.1 only and is
stopped by the fixtures that start it. The tests at the bottom check the helpers."""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"
USER = "ci-bot"
PASSWORD = "s3cret-Pa55-do-not-leak"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], OSError):  # clients hanging up are fine
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_tools(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None and not Path(tool).exists():
            pytest.fail(f"{tool} is missing: run bash .ci/setup")


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd line, made by apache2-utils' htpasswd."""
    need_tools("htpasswd")
    out = subprocess.run(
        ["htpasswd", "-niB", user], input=password, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


# ---------------------------------------------------------------------------------------
# the registry


@dataclass
class Registry:
    """A running docker-registry; ``host`` is ``127.0.0.1:PORT``."""

    root: Path
    auth: str = "none"  # none | htpasswd | token
    token: TokenService | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.root / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.auth == "htpasswd":
            path = self.root / "htpasswd"
            path.write_text(htpasswd_line(USER, PASSWORD) + "\n")
            lines += ["auth:", "  htpasswd:", "    realm: test", f"    path: {path}"]
        elif self.auth == "token":
            assert self.token is not None
            lines += [
                "auth:",
                "  token:",
                f"    realm: http://{self.token.host}/token",
                f"    service: {self.token.service}",
                f"    issuer: {self.token.issuer}",
                f"    rootcertbundle: {self.token.cert}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> Registry:
        need_tools(REGISTRY_BIN)
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            self.port = free_port()
            config = self.root / "config.yml"
            config.write_text(self._config())
            log = open(self.root / "registry.log", "wb")  # noqa: SIM115
            self.proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                    conn.request("GET", "/v2/")
                    status = conn.getresponse().status
                    conn.close()
                    if status in (200, 401):
                        return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError(
            f"docker-registry did not start: {(self.root / 'registry.log').read_text()[-2000:]}"
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def start_registry(root: Path, auth: str = "none", token: TokenService | None = None) -> Registry:
    return Registry(root, auth, token).start()


# ---------------------------------------------------------------------------------------
# a counting, fault-injecting reverse proxy


@dataclass
class Fault:
    """Answer requests matching ``method`` and a ``path`` substring: ``status`` (no
    forwarding), ``truncate`` (half the body, then close) or ``corrupt`` (one byte
    flipped). ``times`` None = always."""

    method: str
    path: str
    kind: str = "status"
    status: int = 500
    times: int | None = 1
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            method == self.method
            and self.path in path
            and (self.times is None or self.hits < self.times)
        )


@dataclass
class Proxy:
    upstream: int
    port: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.faults.clear()

    def blob_uploads(self) -> list[tuple[str, str]]:
        """Requests that upload blob bytes (or start an upload), mounts excluded."""
        return [
            (m, p)
            for m, p in self.requests
            if "/blobs/uploads/" in p and "mount=" not in p and m in ("POST", "PATCH", "PUT")
        ]

    def count(self, method: str, fragment: str = "") -> int:
        return sum(1 for m, p in self.requests if m == method and fragment in p)

    def start(self) -> Proxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._body()
                with proxy.lock:
                    proxy.requests.append((self.command, self.path))
                    fault = next(
                        (f for f in proxy.faults if f.matches(self.command, self.path)), None
                    )
                    if fault is not None:
                        fault.hits += 1
                if fault is not None and fault.kind == "status":
                    data = b'{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}'
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=30)
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():  # repeated headers (Accept) kept
                    if k.lower() not in ("transfer-encoding", "content-length"):
                        conn.putheader(k, v)
                if body or self.command in ("PUT", "PATCH", "POST"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body or None)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                if self.command == "HEAD":
                    self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(data)))
                if fault is not None and fault.kind == "truncate" and len(data) > 1:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if fault is not None and fault.kind == "corrupt" and data:
                    i = len(data) // 2
                    data = data[:i] + bytes([data[i] ^ 0x55]) + data[i + 1 :]
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


# ---------------------------------------------------------------------------------------
# a token service (the bearer flow), JWTs signed with openssl


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenService:
    root: Path
    service: str = "test-registry"
    issuer: str = "test-issuer"
    port: int = 0
    requests: list[dict[str, list[str]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def cert(self) -> Path:
        return self.root / "token.crt"

    @property
    def key(self) -> Path:
        return self.root / "token.key"

    def _sign(self, claims: dict[str, object]) -> str:
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            capture_output=True,
            check=True,
        ).stdout
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
        ).stdout
        return signing_input + "." + _b64url(signature)

    def start(self) -> TokenService:
        need_tools("openssl")
        self.root.mkdir(parents=True, exist_ok=True)
        args = "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=pipeline-test-token"
        subprocess.run(
            ["openssl", *args.split(), "-keyout", str(self.key), "-out", str(self.cert)],
            capture_output=True,
            check=True,
        )
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                service.requests.append(query)
                auth = self.headers.get("Authorization", "")
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if auth != expected:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                access = []
                for scope in query.get("scope", []):
                    kind, _, rest = scope.partition(":")
                    name, _, actions = rest.rpartition(":")
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
                now = int(time.time())
                token = service._sign(
                    {
                        "iss": service.issuer,
                        "sub": USER,
                        "aud": query.get("service", [""])[0],
                        "exp": now + 300,
                        "nbf": now - 30,
                        "iat": now,
                        "jti": secrets.token_hex(8),
                        "access": access,
                    }
                )
                body = json.dumps({"token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture(scope="session", name="registry")
def registry_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An anonymous registry for the whole session."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(name="proxy")
def proxy_fixture(registry: Registry) -> Iterator[Proxy]:
    """A fresh counting / fault-injecting proxy in front of ``registry``."""
    p = Proxy(registry.port).start()
    try:
        yield p
    finally:
        p.stop()


def no_secret_in(paths: list[Path], secret: str) -> list[Path]:
    """Files under ``paths`` that contain ``secret`` (or its base64 with the user)."""
    needles = [secret.encode(), base64.b64encode(f"{USER}:{secret}".encode())]
    found = []
    for root in paths:
        for dirpath, _, files in os.walk(root):
            for name in files:
                path = Path(dirpath) / name
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                if any(n in data for n in needles):
                    found.append(path)
    return found


# ---------------------------------------------------------------------------------------
# the helpers' own checks


def test_registry_starts_and_stops(tmp_path: Path) -> None:
    reg = start_registry(tmp_path / "r")
    conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=2)
    conn.request("GET", "/v2/")
    assert conn.getresponse().status == 200
    reg.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", reg.port), timeout=1).close()


def test_proxy_counts_and_injects(proxy: Proxy) -> None:
    proxy.faults.append(Fault("GET", "/v2/", status=503, times=1))
    for expected in (503, 200):
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=2)
        conn.request("GET", "/v2/")
        assert conn.getresponse().status == expected
        conn.close()
    assert proxy.count("GET", "/v2/") == 2
