"""Hostile registry responses: a tiny HTTP server on 127.0.0.1, started and stopped by
the test, serves crafted bytes to ``pipeline pull``, run in a child process with
bounds on time and peak RSS (see tests/test_hostile.py)."""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests import hostile_inputs as h
from tests.bounded import MiB, base_env, pipeline_argv, run_bounded
from tests.test_hostile import Case, check
from tests.test_registry_support import _Server

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

Reply = Callable[[BaseHTTPRequestHandler], None]


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def send(body: bytes, content_type: str = "application/octet-stream") -> Reply:
    def reply(req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    return reply


def endless(req: BaseHTTPRequestHandler) -> None:
    req.send_response(200)
    req.send_header("Content-Type", MT_MANIFEST)
    req.end_headers()  # no length: the body ends when the connection does
    chunk = b" " * MiB
    try:
        for _ in range(4096):  # 4 GiB at most, should the client never stop
            req.wfile.write(chunk)
    except OSError:
        pass
    req.close_connection = True


class FakeRegistry:
    """``routes``: URL path -> reply; /v2/ answers as a registry."""

    def __init__(self, routes: dict[str, Reply]) -> None:
        self.routes = routes
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/v2/":
                    send(b"{}", "application/json")(self)
                    return
                reply = outer.routes.get(self.path)
                if reply is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                reply(self)

            do_HEAD = do_GET

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def image(layer_blob: bytes, diff_id: str) -> dict[str, Reply]:
    """Routes for repo ``r``, tag ``t``: one image whose only layer is ``layer_blob``."""
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": digest(config), "size": len(config)},
            "layers": [
                {"mediaType": MT_GZIP, "digest": digest(layer_blob), "size": len(layer_blob)}
            ],
        }
    ).encode()
    return {
        "/v2/r/manifests/t": send(manifest, MT_MANIFEST),
        f"/v2/r/blobs/{digest(config)}": send(config),
        f"/v2/r/blobs/{digest(layer_blob)}": send(layer_blob),
    }


def zero_bomb_blob() -> bytes:
    once = gzip.compress(b"\0" * MiB, mtime=0)
    head = gzip.compress(h.header("zeros", 4 << 30, fmt=2), mtime=0)
    return head + once * 4096 + gzip.compress(h.END, mtime=0)


BOTH = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [],
        "manifests": [],
    }
).encode()
INDEX_AS_IMAGE = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "config": {"mediaType": MT_CONFIG, "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [],
    }
).encode()
TRUNCATED = gzip.compress(h.member("a", b"first") + h.member("b", b"x" * 2000)[:900], mtime=0)

REGISTRY_CASES: list[tuple[Case, Callable[[], dict[str, Reply]]]] = [
    (
        Case(
            "manifest-and-index-at-once",
            lambda d: [],
            r"127\.0\.0\.1:\d+/r@sha256:[0-9a-f]{64}: refused: ambiguous document: it has both "
            r"'manifests' and 'layers'/'config'",
        ),
        lambda: {"/v2/r/manifests/t": send(BOTH, MT_MANIFEST)},
    ),
    (
        Case(
            "index-declared-image-shaped",
            lambda d: [],
            r"refused: declared as application/vnd\.oci\.image\.index\.v1\+json but shaped like "
            r"an image manifest",
        ),
        lambda: {"/v2/r/manifests/t": send(INDEX_AS_IMAGE, MT_INDEX)},
    ),
    (
        Case("endless-manifest", lambda d: [], r"manifest t: larger than 4194304 bytes"),
        lambda: {"/v2/r/manifests/t": endless},
    ),
    (
        Case("100000-deep-manifest", lambda d: [], r"manifest t: not JSON"),
        lambda: {"/v2/r/manifests/t": send(b"[" * 100_000 + b"]" * 100_000, MT_MANIFEST)},
    ),
    (
        Case(
            "4GiB-zero-bomb-layer",
            lambda d: [],
            r"127\.0\.0\.1:\d+/r@sha256:[0-9a-f]{64}: refused: .* \(over 250 times; a "
            r"decompression bomb\?\)",
            seconds=30,
        ),
        lambda: image(zero_bomb_blob(), "sha256:" + "1" * 64),
    ),
    (
        Case(
            "truncated-layer-tar",
            lambda d: [],
            r'127\.0\.0\.1:\d+/r@sha256:[0-9a-f]{64}: truncated: entry 2 "b" ends after',
        ),
        lambda: image(TRUNCATED, "sha256:" + "1" * 64),
    ),
]


@pytest.mark.parametrize(("case", "routes"), REGISTRY_CASES, ids=lambda c: getattr(c, "id", ""))
def test_registry_responses(
    tmp_path: Path, case: Case, routes: Callable[[], dict[str, Reply]]
) -> None:
    with FakeRegistry(routes()) as registry:
        env = base_env(tmp_path / "store", PIPELINE_REGISTRY_RETRIES="1")
        outcome = run_bounded(
            pipeline_argv("pull", f"{registry.host}/r:t", "--tag", "t:1"),
            env=env,
            timeout=case.seconds * 2,
        )
    check(outcome, case)
    store = tmp_path / "store"
    assert [p.name for p in (store / "layers").iterdir()] == []
    assert [p.name for p in (store / "tmp").iterdir()] == []
