"""The registry client on an injected transport (``httpx.MockTransport``): an in-memory
registry that speaks enough of the distribution API, with bearer auth and faults. Fast
unit tests of the client's logic; tests/test_registry.py keeps the real-registry ones."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pipeline.digest import sha256_bytes
from pipeline.oci.media import MT_MANIFEST
from pipeline.registry.auth import Credentials
from pipeline.registry.client import RegistryClient
from pipeline.registry.reference import RegistryAuthError, RegistryError
from pipeline.registry.retry import RetryPolicy

HOST = "registry.test"
FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.005, budget=1)


class Chunks(httpx.SyncByteStream):
    """A body streamed in pieces, as a network would (httpx reads plain content eagerly)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self):  # type: ignore[no-untyped-def]
        for i in range(0, len(self.data), 4096):
            yield self.data[i : i + 4096]


@dataclass
class FakeRegistry:
    """Blobs and manifests in dicts; optional bearer auth; scripted faults by path."""

    token: str | None = None
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    uploads: dict[str, bytearray] = field(default_factory=dict)
    faults: list[Callable[[httpx.Request], httpx.Response | None]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.log.append(f"{request.method} {request.url.path}")
        for fault in list(self.faults):
            resp = fault(request)
            if resp is not None:
                return resp
        path = request.url.path
        if path == "/token":
            query = parse_qs(urlsplit(str(request.url)).query)
            if request.headers.get("Authorization") != _basic("u", "p"):
                return httpx.Response(401)
            return httpx.Response(200, json={"token": self.token, "scope": query.get("scope")})
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            realm = f'Bearer realm="https://{HOST}/token",service="{HOST}"'
            return httpx.Response(401, headers={"WWW-Authenticate": realm})
        if path == "/v2/":
            return httpx.Response(200, headers={"Docker-Distribution-API-Version": "registry/2.0"})
        parts = path.split("/")
        if "blobs" in parts and "uploads" not in parts:
            digest = parts[-1]
            if digest not in self.blobs:
                return httpx.Response(404)
            data = self.blobs[digest]
            headers = {"Content-Length": str(len(data)), "Docker-Content-Digest": digest}
            if request.method == "HEAD":
                return httpx.Response(200, headers=headers)
            return httpx.Response(200, stream=Chunks(data), headers=headers)
        if "uploads" in parts:
            return self._upload(request, parts)
        if "manifests" in parts:
            ref = parts[-1]
            if request.method == "PUT":
                data = request.read()
                digest = sha256_bytes(data)
                self.manifests[ref] = self.manifests[digest] = (
                    data,
                    request.headers["Content-Type"],
                )
                return httpx.Response(201, headers={"Docker-Content-Digest": digest})
            if ref not in self.manifests:
                return httpx.Response(404)
            data, media_type = self.manifests[ref]
            headers = {"Content-Type": media_type, "Docker-Content-Digest": sha256_bytes(data)}
            return httpx.Response(
                200, content=b"" if request.method == "HEAD" else data, headers=headers
            )
        return httpx.Response(404)

    def _upload(self, request: httpx.Request, parts: list[str]) -> httpx.Response:
        repo = "/".join(parts[2 : parts.index("blobs")])
        if request.method == "POST":
            session = f"s{len(self.uploads)}"
            self.uploads[session] = bytearray()
            return httpx.Response(202, headers={"Location": f"/v2/{repo}/blobs/uploads/{session}"})
        session = parts[-1]
        self.uploads[session] += request.read()
        if request.method == "PATCH":
            return httpx.Response(202, headers={"Location": f"/v2/{repo}/blobs/uploads/{session}"})
        digest = parse_qs(urlsplit(str(request.url)).query)["digest"][0]
        data = bytes(self.uploads.pop(session))
        if sha256_bytes(data) != digest:
            return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID"}]})
        self.blobs[digest] = data
        return httpx.Response(201, headers={"Docker-Content-Digest": digest})


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def client(fake: FakeRegistry, **kw: object) -> RegistryClient:
    return RegistryClient(
        HOST,
        transport=httpx.MockTransport(fake),
        retry=FAST,
        environ={},
        **kw,  # type: ignore[arg-type]
    )


def test_push_and_read_back_a_blob() -> None:
    fake = FakeRegistry()
    data = b"layer bytes" * 1000
    digest = sha256_bytes(data)
    with client(fake) as c:
        c.ping()
        assert not c.blob_exists("team/app", digest)
        c.upload_bytes("team/app", digest, data)
        assert c.blob_exists("team/app", digest)
        assert c.get_blob_bytes("team/app", digest, len(data), 1 << 20) == data
    assert fake.blobs[digest] == data


def test_a_blob_that_does_not_match_its_digest_is_refused() -> None:
    fake = FakeRegistry()
    digest = sha256_bytes(b"the real bytes")
    fake.blobs[digest] = b"other bytes"
    with client(fake) as c, pytest.raises(RegistryError) as err:
        c.get_blob_bytes("team/app", digest, None, 1 << 20)
    assert str(err.value).startswith(f"{HOST}/team/app@{digest}: ")


def test_transient_errors_are_retried_within_the_policy() -> None:
    fake = FakeRegistry()
    fails = iter([503, 503])

    def flaky(request: httpx.Request) -> httpx.Response | None:
        code = next(fails, None)
        return httpx.Response(code) if code is not None else None

    fake.faults.append(flaky)
    with client(fake) as c:
        c.ping()
    assert fake.log.count("GET /v2/") == 3


def test_persistent_errors_end_in_one_located_line() -> None:
    fake = FakeRegistry()
    fake.faults.append(lambda request: httpx.Response(503))
    with client(fake) as c, pytest.raises(RegistryError) as err:
        c.ping()
    assert str(err.value).startswith(HOST)
    assert "\n" not in str(err.value)
    assert fake.log.count("GET /v2/") == FAST.attempts


def test_bearer_tokens_are_fetched_with_credentials() -> None:
    fake = FakeRegistry(token="t0ken")
    data = json.dumps({"schemaVersion": 2, "mediaType": MT_MANIFEST, "layers": []}).encode()
    with client(fake, credentials=Credentials("u", "p")) as c:
        c.ping()
        digest = c.put_manifest("team/app", "1", data, MT_MANIFEST)
        got = c.get_manifest("team/app", "1")
    assert got is not None and got.data == data and got.digest == digest
    assert any(line.startswith("GET /token") for line in fake.log)


def test_wrong_credentials_are_an_auth_error() -> None:
    fake = FakeRegistry(token="t0ken")
    with client(fake, credentials=Credentials("u", "wrong")) as c, pytest.raises(RegistryAuthError):
        c.put_manifest("team/app", "1", b"{}", MT_MANIFEST)


def test_a_manifest_whose_bytes_do_not_match_the_digest_ref_is_refused() -> None:
    fake = FakeRegistry()
    good = json.dumps({"schemaVersion": 2}).encode()
    digest = sha256_bytes(good)
    fake.manifests[digest] = (b'{"schemaVersion": 2, "evil": true}', MT_MANIFEST)
    with client(fake) as c, pytest.raises(RegistryError):
        c.get_manifest("team/app", digest)
