"""An OCI distribution (registry v2) client: blobs and manifests over a
:class:`~pipeline.registry.transport.Session`.

What it does, and its contracts:

* **References** ``host[:port]/name[:tag][@sha256:...]``. A first component with a
  dot, a colon or ``localhost`` is the registry; anything else is on Docker Hub
  (``docker.io``, ``library/`` added to one-component names), like ``docker push``.
* **Transport.** TLS (verified, with the system trust store or the given CA bundle)
  for every registry, except plain HTTP for loopback hosts (``127.0.0.0/8``, ``::1``,
  ``localhost``) and, when asked with ``insecure=True``, for any host. Proxies from
  the environment are honoured except for loopback hosts.
* **Auth.** Anonymous first; on a 401 the ``WWW-Authenticate`` challenge decides:
  ``Basic`` sends the credentials on every later request, ``Bearer`` fetches a token
  from the challenge's realm for the request's scopes (``repository:NAME:pull,push``;
  a cross-repository mount also asks ``pull`` on the source) with the credentials as
  Basic auth, or anonymously without any, and caches it per scope until it expires.
  Credentials come from ``PIPELINE_REGISTRY_USER`` / ``PIPELINE_REGISTRY_PASSWORD``,
  else the ``auths`` of the docker ``config.json`` (``$DOCKER_CONFIG`` or
  ``~/.docker``). They live in memory only: never in a message, a log line, a URL
  or the store (``Credentials.__repr__`` hides the password).
* **Retries.** Connection errors, 5xx and 429 answers are retried with exponential
  backoff (``Retry-After`` honoured), bounded by a count and by total waiting time
  (``RetryPolicy``; ``PIPELINE_REGISTRY_RETRIES`` sets the count). Uploads retry as a
  whole (a fresh upload session); a broken blob download is retried by its caller,
  which starts the layer again.
* **Verification.** Manifests fetched by digest must hash to it; manifests fetched by
  tag must hash to ``Docker-Content-Digest`` when the registry sends one. Blob reads
  (:meth:`RegistryClient.open_blob`) hash and count while streaming, refuse more bytes
  than the descriptor says and report a short stream as truncated; the caller checks
  :attr:`BlobReader.digest` at the end.
* **Errors** are :class:`RegistryError`: one line that starts with
  ``registry/repository[@digest]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.digest import DIGEST_PREFIX, is_digest, sha256_bytes
from pipeline.registry.reference import ACCEPT, MAX_MANIFEST, RegistryAuthError, RegistryError
from pipeline.registry.retry import RETRY_STATUS, Backoff, Body
from pipeline.registry.transport import (
    BlobReader,
    Manifest,
    Response,
    Session,
    file_chunks,
    location_with_digest,
    scope,
)


class RegistryClient(Session):
    """One registry's v2 API: blobs and manifests. Thread-safe (one connection pool, a
    lock around the auth state). Use as a context manager or call :meth:`close`."""

    def blob_exists(self, repository: str, digest: str) -> bool:
        resp = self._send(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            what="blob check",
            scopes=(scope(repository, "pull"),),
            repository=repository,
            digest=digest,
        )
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise self._status_error(resp, "blob check", repository, digest)

    def mount_blob(self, repository: str, digest: str, source: str) -> tuple[bool, str | None]:
        """Ask for a cross-repository mount of ``digest`` from ``source`` (same
        registry). (True, None) when mounted; (False, upload URL) when the registry
        opened an upload session instead."""
        scopes = tuple(sorted({scope(repository, "pull,push"), scope(source, "pull")}))
        resp = self._send(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            what=f"mount from {source}",
            scopes=scopes,
            repository=repository,
            digest=digest,
            params={"mount": digest, "from": source},
            headers={"Content-Length": "0"},
        )
        if resp.status_code == 201:
            return True, None
        if resp.status_code == 202 and resp.headers.get("Location"):
            return False, resp.headers["Location"]
        raise self._status_error(resp, f"mount from {source}", repository, digest)

    def start_upload(self, repository: str, digest: str | None = None) -> str:
        resp = self._send(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            what="start upload",
            scopes=(scope(repository, "pull,push"),),
            repository=repository,
            digest=digest,
            headers={"Content-Length": "0"},
        )
        if resp.status_code != 202 or not resp.headers.get("Location"):
            raise self._status_error(resp, "start upload", repository, digest)
        return str(resp.headers["Location"])

    def upload_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        path: Path,
        location: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Upload the file at ``path`` as blob ``digest`` (``size`` bytes): one PUT when
        it fits ``chunk_size``, else PATCH chunks then a closing PUT. A failed upload is
        started again in a fresh session, within the retry policy. Returns the number of
        requests it took. ``progress(bytes read for sending so far)`` as it goes."""
        backoff = Backoff(self.retry)
        before = self.requests
        while True:
            try:
                where = location or self.start_upload(repository, digest)
                location = None
                if size <= self.chunk_size:
                    body = lambda: file_chunks(path, progress=progress)  # noqa: E731
                    self._put_blob(repository, digest, where, size, body)
                else:
                    self._chunked(repository, digest, where, size, path, progress)
                return self.requests - before
            except RegistryError as exc:
                if isinstance(exc, RegistryAuthError) or not exc.transient:
                    raise
                if not backoff.next():
                    raise
                continue

    def upload_bytes(
        self, repository: str, digest: str, data: bytes, location: str | None = None
    ) -> None:
        """Upload a small blob in one PUT (a fresh session per retry)."""
        backoff = Backoff(self.retry)
        while True:
            try:
                where = location or self.start_upload(repository, digest)
                location = None
                self._put_blob(repository, digest, where, len(data), data)
                return
            except RegistryError as exc:
                if isinstance(exc, RegistryAuthError) or not exc.transient:
                    raise
                if not backoff.next():
                    raise

    def _put_blob(
        self,
        repository: str,
        digest: str,
        location: str,
        size: int,
        body: Body,
    ) -> None:
        resp = self._send(
            "PUT",
            location_with_digest(location, digest),
            what="upload",
            scopes=(scope(repository, "pull,push"),),
            repository=repository,
            digest=digest,
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            body=body,
            retry=False,
        )
        self._check_upload_end(resp, repository, digest)

    def _check_upload_end(self, resp: Response, repository: str, digest: str) -> None:
        if resp.status_code in RETRY_STATUS:
            raise self.error(f"upload: HTTP {resp.status_code}", repository, digest, True)
        if resp.status_code != 201:
            raise self._status_error(resp, "upload", repository, digest)
        sent = resp.headers.get("Docker-Content-Digest")
        if sent and sent != digest:
            raise self.error(f"upload: the registry stored it as {sent}", repository, digest)

    def _chunked(
        self,
        repository: str,
        digest: str,
        location: str,
        size: int,
        path: Path,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        scopes = (scope(repository, "pull,push"),)
        offset = 0
        while offset < size:
            length = min(self.chunk_size, size - offset)
            start = offset
            resp = self._send(
                "PATCH",
                location,
                what=f"upload chunk at {start}",
                scopes=scopes,
                repository=repository,
                digest=digest,
                headers={
                    "Content-Length": str(length),
                    "Content-Range": f"{start}-{start + length - 1}",
                    "Content-Type": "application/octet-stream",
                },
                body=lambda s=start, n=length: file_chunks(path, s, n, progress),  # type: ignore[misc]
                retry=False,
            )
            if resp.status_code in RETRY_STATUS or resp.status_code == 416:
                raise self.error(
                    f"upload chunk at {start}: HTTP {resp.status_code}", repository, digest, True
                )
            if resp.status_code != 202:
                raise self._status_error(resp, f"upload chunk at {start}", repository, digest)
            location = resp.headers.get("Location") or location
            offset += length
        resp = self._send(
            "PUT",
            location_with_digest(location, digest),
            what="finish upload",
            scopes=scopes,
            repository=repository,
            digest=digest,
            headers={"Content-Length": "0"},
            body=b"",
            retry=False,
        )
        self._check_upload_end(resp, repository, digest)

    @contextlib.contextmanager
    def open_blob(
        self,
        repository: str,
        digest: str,
        size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[BlobReader]:
        """Stream blob ``digest``: a BlobReader that hashes and counts (and tells
        ``progress`` the bytes read so far); the caller checks ``.digest`` after reading
        to the end. Redirects are followed (Authorization is dropped when they leave the
        registry's host)."""
        resp = self._send(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            what="blob download",
            scopes=(scope(repository, "pull"),),
            repository=repository,
            digest=digest,
            stream=True,
            follow_redirects=True,
        )
        try:
            if resp.status_code != 200:
                resp.read()
                if resp.status_code == 404:
                    raise self.error("blob unknown to the registry", repository, digest)
                raise self._status_error(resp, "blob download", repository, digest)

            def fail(message: str, transient: bool = False) -> RegistryError:
                return self.error(message, repository, digest, transient)

            yield BlobReader(resp, size, fail, progress)
        finally:
            resp.close()

    def get_blob_bytes(self, repository: str, digest: str, size: int | None, limit: int) -> bytes:
        """A small blob (a config), verified against ``digest`` and ``size``."""
        if size is not None and size > limit:
            raise self.error(f"blob of {size} bytes is larger than {limit}", repository, digest)
        backoff = Backoff(self.retry)
        while True:
            try:
                with self.open_blob(repository, digest, size if size is not None else limit) as r:
                    data = r.read()
                    actual = r.digest
                break
            except RegistryError as exc:
                if exc.transient and backoff.next():
                    continue
                raise
        if actual != digest:
            raise self.error(f"digest mismatch: the registry sent {actual}", repository, digest)
        if size is not None and len(data) != size:
            raise self.error(
                f"size mismatch: expected {size} bytes, got {len(data)}", repository, digest
            )
        return data

    def get_manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest or index ``reference`` (tag or digest) names, verified; None on
        404. A digest reference must match the bytes; a tag's bytes must match the
        ``Docker-Content-Digest`` the registry sends."""
        digest_ref = reference if is_digest(reference) else None
        resp = self._send(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            what=f"manifest {reference}",
            scopes=(scope(repository, "pull"),),
            repository=repository,
            digest=digest_ref,
            headers={"Accept": ACCEPT},
        )
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._status_error(resp, f"manifest {reference}", repository, digest_ref)
        data = resp.content
        if len(data) > MAX_MANIFEST:
            raise self.error(f"manifest {reference}: larger than {MAX_MANIFEST} bytes", repository)
        actual = sha256_bytes(data)
        expected = digest_ref or resp.headers.get("Docker-Content-Digest")
        if expected and expected.startswith(DIGEST_PREFIX) and actual != expected:
            raise self.error(
                f"manifest {reference}: digest mismatch: the registry sent bytes hashing to "
                f"{actual}",
                repository,
                expected,
            )
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):
            raise self.error(f"manifest {reference}: not JSON", repository, actual) from None
        if not isinstance(value, Mapping):
            raise self.error(f"manifest {reference}: not a JSON object", repository, actual)
        if isinstance(value.get("mediaType"), str):
            media_type = value["mediaType"]
        if value.get("schemaVersion") != 2:
            raise self.error(
                f"manifest {reference}: schema version {value.get('schemaVersion')!r} "
                "is not supported (only schema 2 / OCI)",
                repository,
                actual,
            )
        return Manifest(data, media_type, actual)

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest ``reference`` names (HEAD), or None when it does not exist."""
        resp = self._send(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            what=f"manifest {reference}",
            scopes=(scope(repository, "pull"),),
            repository=repository,
            headers={"Accept": ACCEPT},
        )
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._status_error(resp, f"manifest {reference}", repository, None)
        digest = resp.headers.get("Docker-Content-Digest")
        if digest and is_digest(digest):
            return str(digest)
        found = self.get_manifest(repository, reference)
        return found.digest if found else None

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT a manifest under a tag (or its digest); returns its digest."""
        digest = sha256_bytes(data)
        resp = self._send(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            what=f"manifest {reference}",
            scopes=(scope(repository, "pull,push"),),
            repository=repository,
            digest=digest,
            headers={"Content-Type": media_type},
            body=data,
        )
        if resp.status_code not in (200, 201):
            raise self._status_error(resp, f"manifest {reference}", repository, digest)
        sent = resp.headers.get("Docker-Content-Digest")
        if sent and sent != digest:
            raise self.error(f"manifest {reference}: stored as {sent}", repository, digest)
        return digest


class Registries:
    """One client per registry host, made on first use with the same settings."""

    def __init__(
        self,
        insecure: bool = False,
        ca_bundle: Path | None = None,
        environ: Mapping[str, str] | None = None,
        chunk_size: int | None = None,
        transport: Any = None,
    ) -> None:
        """``transport`` (an httpx transport) is handed to every client, for tests."""
        self.insecure = insecure
        self.transport = transport
        self.ca_bundle = ca_bundle
        self.environ = os.environ if environ is None else environ
        self.chunk_size = chunk_size or _env_chunk_size(self.environ)
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def client(self, registry: str) -> RegistryClient:
        with self._lock:
            found = self._clients.get(registry)
            if found is None:
                found = RegistryClient(
                    registry,
                    insecure=self.insecure,
                    ca_bundle=self.ca_bundle,
                    environ=self.environ,
                    chunk_size=self.chunk_size,
                    transport=self.transport,
                )
                self._clients[registry] = found
            return found

    def requests(self) -> int:
        return sum(c.requests for c in self._clients.values())

    def close(self) -> None:
        with self._lock:
            for c in self._clients.values():
                c.close()
            self._clients.clear()


def _env_chunk_size(environ: Mapping[str, str]) -> int:
    """Blobs larger than this go up in PATCH chunks of this size
    (``PIPELINE_REGISTRY_CHUNK`` bytes, default 16 MiB)."""
    text = environ.get("PIPELINE_REGISTRY_CHUNK", "")
    return int(text) if text.isdigit() and int(text) > 0 else 16 << 20


def pick_platform(index: Mapping[str, Any], os_name: str, arch: str) -> Mapping[str, Any] | None:
    """The first descriptor of ``index`` for ``os_name``/``arch`` (None if absent)."""
    for entry in index.get("manifests") or []:
        if not isinstance(entry, Mapping):
            continue
        plat = entry.get("platform") or {}
        if plat.get("os") == os_name and plat.get("architecture") == arch:
            return entry
    return None


def platforms(index: Mapping[str, Any]) -> list[str]:
    out = []
    for entry in index.get("manifests") or []:
        plat = entry.get("platform") if isinstance(entry, Mapping) else None
        if isinstance(plat, Mapping):
            out.append(f"{plat.get('os', '?')}/{plat.get('architecture', '?')}")
    return out


def descriptors(value: Sequence[Any], where: Callable[[str], RegistryError]) -> list[Any]:
    """Validate descriptor objects (digest well-formed, size a non-negative int)."""
    out = []
    for d in value:
        if (
            not isinstance(d, Mapping)
            or not isinstance(d.get("digest"), str)
            or not is_digest(d["digest"])
            or not isinstance(d.get("size"), int)
            or d["size"] < 0
        ):
            raise where(f"bad descriptor {str(d)[:120]!r} (sha256 digest and size required)")
        out.append(d)
    return out
