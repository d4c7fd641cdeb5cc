"""pipeline.registry: pure parts (references, challenges, credentials, retry policy) and
the client against a real docker-registry on 127.0.0.1 (anonymous, htpasswd, bearer
tokens, TLS with a CA bundle), through a counting / fault-injecting proxy."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.digest import sha256_bytes
from pipeline.errors import UsageError
from pipeline.registry.auth import Credentials, find_credentials, parse_challenge
from pipeline.registry.client import RegistryClient
from pipeline.registry.reference import Reference, RegistryAuthError, RegistryError, is_loopback
from pipeline.registry.retry import RetryPolicy
from tests.test_registry_support import (
    PASSWORD,
    USER,
    Fault,
    Proxy,
    Registry,
    TokenService,
    free_port,
    proxy_fixture,  # noqa: F401
    registry_fixture,  # noqa: F401
    start_registry,
)

D = "sha256:" + "ab" * 32
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, budget=2)

# ---------------------------------------------------------------------------------------
# pure


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/acme/one:1", ("127.0.0.1:5000", "acme/one", "1", None)),
        ("localhost/x", ("localhost", "x", None, None)),
        (f"localhost:5000/x/y@{D}", ("localhost:5000", "x/y", None, D)),
        (f"reg.example.com/team/web:v2@{D}", ("reg.example.com", "team/web", "v2", D)),
        ("busybox", ("docker.io", "library/busybox", None, None)),
        ("acme/web:1.0", ("docker.io", "acme/web", "1.0", None)),
        ("[::1]:5000/a/b_c-d.e:t", ("[::1]:5000", "a/b_c-d.e", "t", None)),
    ],
)
def test_reference_parse(text: str, expected: tuple[str, str, str | None, str | None]) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("host:5000/Upper", "bad repository"),
        ("host:5000/a:", "bad tag"),
        ("host:5000/a@sha256:xyz", "bad digest"),
        ("host:5000/a//b", "bad repository"),
        ("bad_host.com/a", "bad registry host"),
        ("host:5000/a:" + "t" * 129, "bad tag"),
    ],
)
def test_reference_parse_refuses(text: str, why: str) -> None:
    with pytest.raises(UsageError, match=why) as err:
        Reference.parse(text)
    assert str(err.value).startswith(text)


def test_loopback_hosts() -> None:
    for host in ("127.0.0.1:5000", "127.3.2.1", "localhost", "localhost:80", "[::1]:5000"):
        assert is_loopback(host), host
    for host in ("example.com", "10.0.0.1:5000", "[2001:db8::1]:5000", "localhost.evil.com"):
        assert not is_loopback(host), host


def test_transport_choice_without_network() -> None:
    assert RegistryClient("reg.example.com", environ={}).base_url == "https://reg.example.com"
    assert RegistryClient("docker.io", environ={}).base_url == "https://registry-1.docker.io"
    insecure = RegistryClient("reg.example.com:5000", insecure=True, environ={})
    assert insecure.base_url == "http://reg.example.com:5000"


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="reg, main",'
        'scope="repository:a/b:pull,push",error="insufficient_scope"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example.com/token",
        "service": "reg, main",
        "scope": "repository:a/b:pull,push",
        "error": "insufficient_scope",
    }
    assert parse_challenge('Basic realm="x \\"y\\""') == ("basic", {"realm": 'x "y"'})


def test_credentials_from_env_and_docker_config(tmp_path: Path) -> None:
    env = {"PIPELINE_REGISTRY_USER": "u", "PIPELINE_REGISTRY_PASSWORD": "p w"}
    creds = find_credentials("any.example.com", env)
    assert creds is not None and (creds.username, creds.password) == ("u", "p w")
    assert "p w" not in repr(creds) and "p w" not in str(creds)

    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    auth = base64.b64encode(b"alice:pa:ss").decode()
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://reg.example.com:5000/v1/": {"auth": auth},
                    "other.example.com": {"username": "bob", "password": "pw"},
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:x").decode()},
                    "broken.example.com": {"auth": "!!not base64!!"},
                }
            }
        )
    )
    env = {"DOCKER_CONFIG": str(config.parent)}
    found = find_credentials("reg.example.com:5000", env)
    assert found is not None and (found.username, found.password) == ("alice", "pa:ss")
    assert found.source == str(config)
    other = find_credentials("other.example.com", env)
    assert other is not None and other.username == "bob"
    hub = find_credentials("docker.io", env)
    assert hub is not None and hub.username == "hub"
    assert find_credentials("nobody.example.com", env) is None
    with pytest.raises(RegistryError, match="not base64") as err:
        find_credentials("broken.example.com", env)
    assert "!!not" not in str(err.value)
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {"h.example": {}}}))
    assert find_credentials("h.example", {"HOME": str(home)}) is None


def test_retry_policy_is_bounded() -> None:
    policy = RetryPolicy(attempts=6, base_delay=0.5, max_delay=2.0, budget=10)
    delays = [policy.delay(i) for i in range(10)]
    assert all(d <= 2.0 * 1.25 for d in delays)
    assert policy.delay(0, retry_after=100) <= 2.0
    assert RetryPolicy.from_env({"PIPELINE_REGISTRY_RETRIES": "2"}).attempts == 2


# ---------------------------------------------------------------------------------------
# against a real registry


def _client(host: str, **kw: object) -> RegistryClient:
    kw.setdefault("environ", {})
    kw.setdefault("retry", FAST)
    return RegistryClient(host, **kw)  # type: ignore[arg-type]


def _push_small_image(client: RegistryClient, repo: str, tag: str) -> tuple[bytes, str]:
    layer = os.urandom(3000)
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": []}}).encode()
    for blob in (layer, config):
        client.upload_bytes(repo, sha256_bytes(blob), blob)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_bytes(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256_bytes(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    digest = client.put_manifest(repo, tag, manifest, "application/vnd.oci.image.manifest.v1+json")
    return manifest, digest


def test_monolithic_and_chunked_uploads_mount_and_download(proxy: Proxy, tmp_path: Path) -> None:
    client = _client(proxy.host, chunk_size=64 * 1024)
    client.ping()
    data = os.urandom(200 * 1024)
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = sha256_bytes(data)
    assert not client.blob_exists("t/chunked", digest)
    proxy.reset()
    client.upload_blob("t/chunked", digest, len(data), path)
    assert proxy.count("PATCH") == 4 and proxy.count("PUT", "/blobs/uploads/") == 1
    assert client.blob_exists("t/chunked", digest)
    with client.open_blob("t/chunked", digest, len(data)) as reader:
        got = reader.read()
    assert got == data and reader.digest == digest

    small = os.urandom(1000)
    small_path = tmp_path / "small"
    small_path.write_bytes(small)
    proxy.reset()
    client.upload_blob("t/mono", sha256_bytes(small), len(small), small_path)
    assert proxy.count("PATCH") == 0 and proxy.count("PUT", "/blobs/uploads/") == 1

    proxy.reset()
    assert client.mount_blob("t/other", digest, "t/chunked") == (True, None)
    assert proxy.blob_uploads() == []
    assert client.blob_exists("t/other", digest)
    mounted, location = client.mount_blob("t/other2", sha256_bytes(b"unknown"), "t/chunked")
    assert not mounted and location


def test_manifests_put_get_by_tag_and_digest(proxy: Proxy) -> None:
    client = _client(proxy.host)
    manifest, digest = _push_small_image(client, "t/img", "v1")
    assert digest == sha256_bytes(manifest)
    for ref in ("v1", digest):
        found = client.get_manifest("t/img", ref)
        assert found is not None and found.data == manifest and found.digest == digest
    assert client.manifest_digest("t/img", "v1") == digest
    assert client.get_manifest("t/img", "nope") is None
    assert client.manifest_digest("t/img", "nope") is None
    proxy.faults.append(Fault("GET", "/manifests/v1", kind="corrupt", times=None))
    with pytest.raises(RegistryError, match="digest mismatch") as err:
        client.get_manifest("t/img", "v1")
    assert str(err.value).startswith(f"{proxy.host}/t/img@{digest}: ")


def test_5xx_are_retried_then_bounded(proxy: Proxy) -> None:
    client = _client(proxy.host)
    _, digest = _push_small_image(client, "t/retry", "v1")
    proxy.reset()
    proxy.faults.append(Fault("GET", "/manifests/v1", status=500, times=2))
    found = client.get_manifest("t/retry", "v1")
    assert found is not None and found.digest == digest
    assert proxy.count("GET", "/manifests/v1") == 3

    proxy.reset()
    proxy.faults.append(Fault("GET", "/manifests/v1", status=503, times=None))
    with pytest.raises(RegistryError, match=r"HTTP 503 after 3 attempt\(s\)") as err:
        client.get_manifest("t/retry", "v1")
    assert proxy.count("GET", "/manifests/v1") == 3
    assert f"{proxy.host}/t/retry" in str(err.value) and "\n" not in str(err.value)

    # a failed upload PUT starts a fresh upload session
    proxy.reset()
    proxy.faults.append(Fault("PUT", "/blobs/uploads/", status=502, times=1))
    blob = os.urandom(500)
    client.upload_bytes("t/retry", sha256_bytes(blob), blob)
    assert proxy.count("POST", "/blobs/uploads/") == 2
    assert client.blob_exists("t/retry", sha256_bytes(blob))


def test_truncated_and_corrupted_blob_downloads(proxy: Proxy) -> None:
    client = _client(proxy.host)
    blob = os.urandom(50_000)
    digest = sha256_bytes(blob)
    client.upload_bytes("t/faults", digest, blob)
    proxy.faults.append(Fault("GET", f"/blobs/{digest}", kind="truncate", times=None))
    with pytest.raises(RegistryError, match="truncated") as err:
        client.get_blob_bytes("t/faults", digest, len(blob), 1 << 20)
    assert str(err.value).startswith(f"{proxy.host}/t/faults@{digest}: ")
    assert proxy.count("GET", f"/blobs/{digest}") == FAST.attempts
    proxy.reset()
    proxy.faults.append(Fault("GET", f"/blobs/{digest}", kind="corrupt", times=None))
    with pytest.raises(RegistryError, match="digest mismatch"):
        client.get_blob_bytes("t/faults", digest, len(blob), 1 << 20)


def test_unreachable_registry_is_one_clear_line() -> None:
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(RegistryError, match="cannot reach") as err:
        _client(host).ping()
    assert str(err.value).startswith(host) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------
# auth


@pytest.fixture(scope="module")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("reg-htpasswd"), auth="htpasswd")
    try:
        yield reg
    finally:
        reg.stop()


def test_basic_auth(htpasswd_registry: Registry) -> None:
    host = htpasswd_registry.host
    with pytest.raises(RegistryAuthError, match="no credentials found"):
        _push_small_image(_client(host), "t/auth", "v1")
    wrong = Credentials(USER, "wrong-" + PASSWORD, "test")
    with pytest.raises(RegistryAuthError, match="wrong username or password") as err:
        _push_small_image(_client(host, credentials=wrong), "t/auth", "v1")
    assert PASSWORD not in str(err.value)
    env = {"PIPELINE_REGISTRY_USER": USER, "PIPELINE_REGISTRY_PASSWORD": PASSWORD}
    client = _client(host, environ=env)
    _, digest = _push_small_image(client, "t/auth", "v1")
    assert client.manifest_digest("t/auth", "v1") == digest


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("reg-token")
    tokens = TokenService(root / "tokens").start()
    reg = start_registry(root / "registry", auth="token", token=tokens)
    try:
        yield reg
    finally:
        reg.stop()
        tokens.stop()


def test_bearer_token_flow(token_registry: Registry) -> None:
    tokens = token_registry.token
    assert tokens is not None
    host = token_registry.host
    creds = Credentials(USER, PASSWORD, "test")
    client = _client(host, credentials=creds)
    client.ping()
    _, digest = _push_small_image(client, "team/app", "v1")
    found = client.get_manifest("team/app", "v1")
    assert found is not None and found.digest == digest
    scopes = {s for q in tokens.requests for s in q.get("scope", [])}
    assert "repository:team/app:pull,push" in scopes
    assert all(q.get("service") == [tokens.service] for q in tokens.requests)
    # a mount asks for pull on the source repository too
    layer = json.loads(found.data)["layers"][0]["digest"]
    assert client.mount_blob("team/copy", layer, "team/app") == (True, None)
    assert any(
        {"repository:team/copy:pull,push", "repository:team/app:pull"} <= set(q.get("scope", []))
        for q in tokens.requests
    )
    # tokens are reused: a second read asks the token service nothing
    before = len(tokens.requests)
    client.get_manifest("team/app", "v1")
    assert len(tokens.requests) == before

    wrong = Credentials(USER, "nope", "test")
    with pytest.raises(RegistryAuthError, match=r"token service .* wrong username") as err:
        _client(host, credentials=wrong).get_manifest("team/app", "v1")
    assert "nope" not in str(err.value)
    with pytest.raises(RegistryAuthError, match="no credentials found"):
        _client(host).get_manifest("team/app", "v1")


# ---------------------------------------------------------------------------------------
# TLS


def _make_tls(root: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    root.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        root / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt")
    )
    ext = root / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
        "-out", str(csr))  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return ca, cert, key


def test_tls_registry_needs_its_ca(tmp_path: Path) -> None:
    ca, cert, key = _make_tls(tmp_path / "tls")
    reg = Registry(tmp_path / "reg")
    original = reg._config

    def tls_config() -> str:
        return original() + f"  tls:\n    certificate: {cert}\n    key: {key}\n"

    reg._config = tls_config  # type: ignore[method-assign]
    try:
        _start_tls(reg)
        with pytest.raises(RegistryError, match=r"TLS verification failed.*--ca-bundle"):
            _client(reg.host).ping()
        client = _client(reg.host, ca_bundle=ca)
        client.ping()
        assert client.base_url.startswith("https://")
        _, digest = _push_small_image(client, "t/tls", "v1")
        assert client.manifest_digest("t/tls", "v1") == digest
    finally:
        reg.stop()


def _start_tls(reg: Registry) -> None:
    """Like Registry.start, but the readiness probe speaks TLS (unverified)."""
    import ssl
    import time

    reg.root.mkdir(parents=True, exist_ok=True)
    reg.port = free_port()
    config = reg.root / "config.yml"
    config.write_text(reg._config())
    reg.proc = subprocess.Popen(
        ["/usr/bin/docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import http.client

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", reg.port, timeout=1, context=ctx)
            conn.request("GET", "/v2/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("TLS registry did not start")


def test_plain_http_loopback_registry_is_detected(registry: Registry) -> None:
    client = _client(registry.host)
    client.ping()
    assert client.base_url == f"http://{registry.host}"
