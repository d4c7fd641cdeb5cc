"""The HTTP side of the registry client: the only importer of httpx.

:class:`Session` holds one registry host's connection pool, its TLS settings (a CA
bundle; plain HTTP only for loopback or ``--insecure``), the auth state (Basic or
Bearer tokens per scope) and the request loop with bounded retries. The transport is
injectable (``transport=``, e.g. ``httpx.MockTransport``) for unit tests.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from pipeline.digest import DIGEST_PREFIX
from pipeline.oci.media import INDEX_TYPES
from pipeline.registry.auth import (
    ENV_PASSWORD,
    ENV_USER,
    Credentials,
    find_credentials,
    parse_challenge,
)
from pipeline.registry.reference import (
    CHUNK,
    DEFAULT_REGISTRY,
    DOCKER_HUB_API,
    MAX_MANIFEST,
    USER_AGENT,
    RegistryAuthError,
    RegistryError,
    is_loopback,
)
from pipeline.registry.retry import RETRY_STATUS, Backoff, Body, RetryPolicy, retry_after_seconds

# ---------------------------------------------------------------------------------------
# the client

# A non-streamed response (manifest, token, error document) is read into memory: at
# most this many bytes of it, within this many seconds; a longer body is cut there
# (callers refuse a manifest over MAX_MANIFEST), a slower one is a broken connection.
MAX_BODY = MAX_MANIFEST + 1
BODY_SECONDS = 300.0


def _read_capped(resp: httpx.Response, request: httpx.Request) -> httpx.Response:
    """``resp`` with its body read, but no more than MAX_BODY bytes of it and for no
    longer than BODY_SECONDS; the returned response is complete and closed."""
    deadline = time.monotonic() + BODY_SECONDS
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in resp.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_BODY:
                break
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout(f"body not received within {BODY_SECONDS:.0f} s")
    finally:
        resp.close()
    data = b"".join(chunks)[:MAX_BODY]
    dropped = ("content-encoding", "content-length", "transfer-encoding")
    headers = [(k, v) for k, v in resp.headers.multi_items() if k.lower() not in dropped]
    return httpx.Response(
        resp.status_code, headers=headers, content=data, request=request, extensions=resp.extensions
    )


Response = httpx.Response
"""The response type :class:`Session` methods return (for annotations elsewhere)."""


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as fetched: its exact bytes, media type and digest."""

    data: bytes
    media_type: str
    digest: str

    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def is_index(self) -> bool:
        if self.media_type in INDEX_TYPES:
            return True
        value = self.json()
        return isinstance(value, Mapping) and "manifests" in value and "layers" not in value


class Session:
    """One registry host: the HTTP session, authentication and the request loop.
    Thread-safe (one httpx connection pool, a lock around the auth state)."""

    def __init__(
        self,
        registry: str,
        *,
        insecure: bool = False,
        ca_bundle: Path | None = None,
        credentials: Credentials | None = None,
        environ: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        chunk_size: int = 16 << 20,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport`` replaces the network (an ``httpx.MockTransport`` in unit tests);
        with one, requests go to ``https://`` + the registry host and TLS is not probed."""
        env = os.environ if environ is None else environ
        self.registry = registry
        self.api_host = DOCKER_HUB_API if registry == DEFAULT_REGISTRY else registry
        self.insecure = insecure
        # loopback: TLS when the registry speaks it, else plain HTTP (decided on the
        # first request); --insecure: plain HTTP; everything else: verified TLS
        self._probe_tls = is_loopback(self.api_host) and not insecure and transport is None
        self.base_url = f"{'http' if insecure else 'https'}://{self.api_host}"
        self.credentials = (
            credentials if credentials is not None else find_credentials(registry, env)
        )
        self.retry = retry or RetryPolicy.from_env(env)
        self.chunk_size = chunk_size
        verify: ssl.SSLContext | bool = True
        if ca_bundle is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_bundle))
            except (OSError, ssl.SSLError) as exc:
                raise RegistryError(registry, f"cannot load CA bundle {ca_bundle}: {exc}") from None
        self._http = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            headers={"User-Agent": USER_AGENT},
            trust_env=not is_loopback(self.api_host) and transport is None,
            follow_redirects=False,
            transport=transport,
        )
        self._lock = threading.Lock()
        self._basic = False
        self._bearer: tuple[str, str] | None = None  # (realm, service)
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self.requests = 0  # requests sent, for reports

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- errors ----------------------------------------------------------------------

    def error(
        self,
        message: str,
        repository: str | None = None,
        digest: str | None = None,
        transient: bool = False,
        auth: bool = False,
    ) -> RegistryError:
        cls = RegistryAuthError if auth else RegistryError
        return cls(self.registry, message, repository, digest, transient)

    def _status_error(
        self, resp: httpx.Response, what: str, repository: str | None, digest: str | None
    ) -> RegistryError:
        detail = ""
        with contextlib.suppress(Exception):
            errors = json.loads(resp.read()).get("errors") or []
            detail = "; ".join(
                f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors[:3]
            )
        text = f"{what}: HTTP {resp.status_code}"
        if detail:
            text += f" ({detail[:300]})"
        if resp.status_code in (401, 403):
            return self.error(text, repository, digest, auth=True)
        return self.error(text, repository, digest)

    # -- auth ------------------------------------------------------------------------

    def _auth_header(self, scopes: tuple[str, ...], repository: str | None) -> str | None:
        """The Authorization value for a request needing ``scopes``: a cached token, a
        fresh one once the registry is known to use bearer tokens, Basic once it asked
        for Basic, else nothing (anonymous)."""
        with self._lock:
            bearer = self._bearer
            if bearer is None:
                if self._basic and self.credentials is not None:
                    return _basic(self.credentials)
                return None
            token = self._tokens.get(scopes)
            if token is not None and token[1] > time.monotonic():
                return f"Bearer {token[0]}"
        value, lifetime = self._fetch_token(bearer[0], bearer[1], scopes, repository)
        with self._lock:
            self._tokens[scopes] = (value, time.monotonic() + max(lifetime - 10, 5))
        return f"Bearer {value}"

    def _authenticate(
        self,
        resp: httpx.Response,
        scopes: tuple[str, ...],
        repository: str | None,
        had_auth: bool,
    ) -> None:
        """Act on a 401's challenge so that the next try carries auth; raise when that
        cannot help (no credentials, or the credentials just sent were refused)."""
        header = resp.headers.get("WWW-Authenticate", "")
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if self.credentials is None:
                raise self.error(_no_credentials(self.registry), repository, auth=True)
            if had_auth:
                raise self.error(
                    f"the registry rejected the {self.credentials} (HTTP 401): "
                    "wrong username or password",
                    repository,
                    auth=True,
                )
            with self._lock:
                self._basic = True
            return
        if scheme == "bearer" and params.get("realm"):
            realm, service = params["realm"], params.get("service", "")
            wanted = scopes
            if params.get("scope") and params["scope"] not in wanted:
                wanted = tuple(sorted({*scopes, params["scope"]}))
            token, lifetime = self._fetch_token(realm, service, wanted, repository)
            with self._lock:
                self._bearer = (realm, service)
                self._tokens[scopes] = (token, time.monotonic() + max(lifetime - 10, 5))
            return
        raise self.error(
            f"authentication required with an unsupported challenge {scheme or header!r}",
            repository,
            auth=True,
        )

    def _fetch_token(
        self, realm: str, service: str, scopes: tuple[str, ...], repository: str | None
    ) -> tuple[str, float]:
        parts = urlsplit(realm)
        realm_host = parts.netloc
        if parts.scheme not in ("https", "http") or not realm_host:
            raise self.error(f"bad token realm {realm!r} in the challenge", repository, auth=True)
        if parts.scheme == "http" and not (self.insecure or is_loopback(realm_host)):
            raise self.error(
                f"refusing to send credentials to the plain-HTTP token service {realm_host} "
                "(use --insecure to allow it)",
                repository,
                auth=True,
            )
        params: list[tuple[str, str | int | float | bool | None]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", s) for s in scopes)
        headers = {}
        if self.credentials is not None:
            headers["Authorization"] = _basic(self.credentials)
            params.append(("account", self.credentials.username))
        backoff = Backoff(self.retry)
        while True:
            try:
                self.requests += 1
                resp = self._http.get(realm, params=params, headers=headers)
            except httpx.TransportError as exc:
                if backoff.next():
                    continue
                raise self.error(
                    f"token service {realm_host}: cannot connect: {exc_text(exc)}", repository
                ) from None
            if resp.status_code in RETRY_STATUS and backoff.next(retry_after_seconds(resp.headers)):
                continue
            break
        if resp.status_code in (401, 403):
            if self.credentials is None:
                raise self.error(
                    f"token service {realm_host}: {_no_credentials(self.registry)}",
                    repository,
                    auth=True,
                )
            raise self.error(
                f"token service {realm_host} rejected the {self.credentials} "
                f"(HTTP {resp.status_code}): wrong username or password",
                repository,
                auth=True,
            )
        if resp.status_code != 200:
            raise self.error(
                f"token service {realm_host}: HTTP {resp.status_code}", repository, auth=True
            )
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token = None
            lifetime = 0.0
        if not isinstance(token, str) or not token:
            raise self.error(f"token service {realm_host}: no token in its answer", repository)
        return token, lifetime

    # -- requests --------------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        return urljoin(self.base_url + "/", path_or_url)

    def _send(
        self,
        method: str,
        path_or_url: str,
        *,
        what: str,
        scopes: tuple[str, ...] = (),
        repository: str | None = None,
        digest: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        retry: bool = True,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """Send one request, answering auth challenges and retrying transient failures
        (when ``retry``). Returns the response whatever its status, except that a 401
        that auth cannot fix is raised. A ``stream`` response must be closed."""
        backoff = Backoff(self.retry if retry else RetryPolicy(attempts=1))
        auth_tries = 0
        url = self.url(path_or_url)
        while True:
            request_headers = dict(headers or {})
            auth = self._auth_header(scopes, repository)
            if auth is not None:
                request_headers["Authorization"] = auth
            content = body() if callable(body) else body
            request = self._http.build_request(
                method, url, headers=request_headers, params=params, content=content
            )
            try:
                self.requests += 1
                resp = self._http.send(request, stream=True, follow_redirects=follow_redirects)
            except httpx.TransportError as exc:
                if _not_tls_server(exc) and (
                    self._probe_tls or self.base_url.startswith("http://")
                ):
                    with self._lock:
                        if self._probe_tls:
                            self._probe_tls = False
                            self.base_url = f"http://{self.api_host}"
                    # also a request that went out over TLS before another thread
                    # found that the registry speaks plain HTTP
                    if self.url(path_or_url) != url:
                        url = self.url(path_or_url)
                        continue
                if _is_tls_failure(exc):
                    raise self.error(
                        f"{what}: TLS verification failed ({exc_text(exc)}); give the "
                        "registry's CA with --ca-bundle",
                        repository,
                        digest,
                    ) from None
                if backoff.next():
                    continue
                raise self.error(
                    f"{what}: cannot reach {self.base_url} after {backoff.attempt} "
                    f"attempt(s): {exc_text(exc)}",
                    repository,
                    digest,
                    transient=not retry,
                ) from None
            self._probe_tls = False
            if resp.status_code == 401 and auth_tries < 2:
                resp.close()
                auth_tries += 1
                with self._lock:
                    self._tokens.pop(scopes, None)
                self._authenticate(resp, scopes, repository, auth is not None)
                continue
            if resp.status_code in RETRY_STATUS:
                resp.close()
                if backoff.next(retry_after_seconds(resp.headers)):
                    continue
                raise self.error(
                    f"{what}: HTTP {resp.status_code} after {backoff.attempt} attempt(s)",
                    repository,
                    digest,
                    transient=not retry,
                )
            if resp.status_code == 401:
                resp.close()
                raise self.error(
                    f"{what}: access denied (HTTP 401)"
                    + (f" with the {self.credentials}" if self.credentials else ""),
                    repository,
                    digest,
                    auth=True,
                )
            if not stream:
                try:
                    resp = _read_capped(resp, request)
                except httpx.HTTPError as exc:
                    resp.close()
                    if backoff.next():
                        continue
                    raise self.error(
                        f"{what}: connection broken: {exc_text(exc)}",
                        repository,
                        digest,
                        transient=not retry,
                    ) from None
                finally:
                    resp.close()
            return resp

    # -- API -------------------------------------------------------------------------

    def ping(self) -> None:
        """Check that this is a registry v2 API we can reach (auth not needed yet)."""
        resp = self._send("GET", "/v2/", what="ping")
        if resp.status_code not in (200, 401):
            raise self.error(
                f"{self.base_url}/v2/ answered HTTP {resp.status_code}: not a registry v2 API"
            )
        version = resp.headers.get("Docker-Distribution-API-Version", "registry/2.0")
        if not version.startswith("registry/2."):
            raise self.error(f"unsupported registry API version {version!r}")


def location_with_digest(location: str, digest: str) -> str:
    """An upload URL plus ``digest=...``, keeping its own query (the upload state)."""
    return location + ("&" if "?" in location else "?") + urlencode({"digest": digest})


def scope(repository: str, actions: str) -> str:
    return f"repository:{repository}:{actions}"


def _basic(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _no_credentials(registry: str) -> str:
    return (
        "authentication required and no credentials found for this registry "
        f"(set {ENV_USER}/{ENV_PASSWORD}, or log in so that the docker config.json has "
        f"an auths entry for {registry})"
    )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _not_tls_server(exc: BaseException) -> bool:
    """True when a TLS handshake failed because the server answered in plain HTTP."""
    for cur in _causes(exc):
        text = str(cur).lower()
        if isinstance(cur, ssl.SSLCertVerificationError):
            return False
        if any(m in text for m in ("wrong version number", "record layer failure", "http request")):
            return True
    return False


def _is_tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


# ---------------------------------------------------------------------------------------
# blob reading


class BlobReader:
    """A file-like ``read(n)`` over a streaming blob response that hashes and counts
    every byte. More bytes than ``expected_size`` or a stream that ends early raise a
    RegistryError (transient for a broken connection or a short stream)."""

    def __init__(
        self,
        response: httpx.Response,
        expected_size: int | None,
        fail: Callable[..., Any],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self._chunks = response.iter_raw(CHUNK)
        self._buf = bytearray()
        self._eof = False
        self._expected = expected_size
        self._fail = fail
        self._hash = hashlib.sha256()
        self._progress = progress
        self.size = 0

    def _fill(self, n: int) -> None:
        while not self._eof and (n < 0 or len(self._buf) < n):
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._eof = True
                break
            except httpx.HTTPError as exc:
                raise self._fail(
                    f"transfer broken after {self.size + len(self._buf)} bytes"
                    + (f" of {self._expected}" if self._expected is not None else "")
                    + f" (truncated blob): {exc_text(exc)}",
                    transient=True,
                ) from None
            self._buf += chunk
            if self._expected is not None and self.size + len(self._buf) > self._expected:
                raise self._fail(f"the registry sent more than the {self._expected} bytes expected")

    def read(self, n: int = -1) -> bytes:
        self._fill(n)
        if n < 0 or n >= len(self._buf):
            data = bytes(self._buf)
            self._buf.clear()
        else:
            data = bytes(self._buf[:n])
            del self._buf[:n]
        self._hash.update(data)
        self.size += len(data)
        if self._progress is not None and data:
            self._progress(self.size)
        if n != 0 and not data and self._expected is not None and self.size < self._expected:
            raise self._fail(
                f"truncated blob: got {self.size} of {self._expected} bytes", transient=True
            )
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return DIGEST_PREFIX + self._hash.hexdigest()


def exc_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200] if text else type(exc).__name__


def file_chunks(
    path: Path,
    start: int = 0,
    length: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """The bytes of ``path`` from ``start`` (``length`` of them, or to the end), in
    chunks; ``progress(offset reached)`` before each chunk is handed on."""
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        offset = start
        while left is None or left > 0:
            data = f.read(CHUNK if left is None else min(CHUNK, left))
            if not data:
                return
            if left is not None:
                left -= len(data)
            offset += len(data)
            if progress is not None:
                progress(offset)
            yield data
