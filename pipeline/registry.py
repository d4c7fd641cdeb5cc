"""An OCI distribution (registry v2) client over httpx. The only module that talks HTTP.

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

import base64
import binascii
import contextlib
import hashlib
import ipaddress
import json
import os
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from pipeline.digest import DIGEST_PREFIX, is_digest, sha256_bytes
from pipeline.errors import PipelineError, UsageError

DEFAULT_REGISTRY = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))

MAX_MANIFEST = 4 << 20  # the distribution spec's limit for a manifest
CHUNK = 1 << 20
USER_AGENT = "pipeline/0.1 (+registry client)"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_HOST = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$")


# ---------------------------------------------------------------------------------------
# errors


class RegistryError(PipelineError):
    """A registry operation failed. One line: ``registry/repository[@digest]: message``.

    ``transient`` marks failures worth another try (a broken or truncated transfer)."""

    def __init__(
        self,
        registry: str,
        message: str,
        repository: str | None = None,
        digest: str | None = None,
        transient: bool = False,
    ) -> None:
        self.registry = registry
        self.repository = repository
        self.digest = digest
        self.message = " ".join(message.split())
        self.transient = transient
        where = registry + (f"/{repository}" if repository else "")
        where += f"@{digest}" if digest else ""
        super().__init__(f"{where}: {self.message}")


class RegistryAuthError(RegistryError):
    """The registry (or its token service) refused us: missing or wrong credentials,
    or no permission for the repository."""


# ---------------------------------------------------------------------------------------
# references


@dataclass(frozen=True)
class Reference:
    """``registry/repository[:tag][@digest]``. Pure value; :meth:`parse` validates."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str, default_registry: str = DEFAULT_REGISTRY) -> Reference:
        """Parse an image reference; UsageError (naming ``text``) when it is malformed.
        No tag and no digest means no tag here (callers default to ``latest``)."""
        rest, _, digest = text.partition("@")
        if digest and not is_digest(digest):
            raise UsageError(f"{text}: not an image reference: bad digest {digest!r}")
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, remainder
        else:
            registry, path = default_registry, rest
        if not _HOST.match(registry):
            raise UsageError(f"{text}: not an image reference: bad registry host {registry!r}")
        tag = None
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            path, tag = path.rsplit(":", 1)
            if not _TAG.match(tag):
                raise UsageError(f"{text}: not an image reference: bad tag {tag!r}")
        if registry == DEFAULT_REGISTRY and "/" not in path:
            path = f"library/{path}"
        if not _REPOSITORY.match(path) or len(path) > 255:
            raise UsageError(
                f"{text}: not an image reference: bad repository name {path!r} "
                "(lowercase letters, digits and . _ - separators, components split by /)"
            )
        return cls(registry, path, tag, digest or None)

    @property
    def reference(self) -> str:
        """What to ask the manifests endpoint for: the digest if any, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    @property
    def repo(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        out = self.repo
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1, with or without a port."""
    name = host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------
# credentials


@dataclass(frozen=True)
class Credentials:
    """A username and password, and where they came from (for messages). The
    password never appears in ``repr`` or ``str``."""

    username: str
    password: str = field(repr=False)
    source: str = ""

    def __str__(self) -> str:
        return f"credentials of {self.username!r} from {self.source}"


ENV_USER = "PIPELINE_REGISTRY_USER"
ENV_PASSWORD = "PIPELINE_REGISTRY_PASSWORD"
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")


def docker_config_path(environ: Mapping[str, str]) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    folder = environ.get("DOCKER_CONFIG")
    if folder:
        return Path(folder) / "config.json"
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".docker" / "config.json"


def _auth_key_host(key: str) -> str:
    """``https://host:5000/v1/`` -> ``host:5000``; ``host`` stays."""
    if "://" in key:
        key = urlsplit(key).netloc
    return key.split("/", 1)[0]


def find_credentials(registry: str, environ: Mapping[str, str]) -> Credentials | None:
    """The credentials for ``registry``: the environment variables when both are set,
    else the matching ``auths`` entry of the docker config (``auth`` = base64 of
    ``user:password``, or ``username``/``password``). None when there are none.
    A malformed config is a RegistryError naming the file (never its content)."""
    user, password = environ.get(ENV_USER), environ.get(ENV_PASSWORD)
    if user and password is not None:
        return Credentials(user, password, f"${ENV_USER}/${ENV_PASSWORD}")
    path = docker_config_path(environ)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RegistryError(registry, f"cannot read {path}: {type(exc).__name__}") from None
    auths = config.get("auths") if isinstance(config, Mapping) else None
    if not isinstance(auths, Mapping):
        return None
    wanted = set(_HUB_ALIASES) if registry in _HUB_ALIASES else {registry}
    for key, entry in auths.items():
        if _auth_key_host(str(key)) not in wanted or not isinstance(entry, Mapping):
            continue
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                decoded = base64.b64decode(entry["auth"], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise RegistryError(
                    registry, f"{path}: auths[{key!r}].auth is not base64 of user:password"
                ) from None
            name, sep, secret = decoded.partition(":")
            if not sep:
                raise RegistryError(
                    registry, f"{path}: auths[{key!r}].auth is not base64 of user:password"
                )
            return Credentials(name, secret, str(path))
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"], str(path))
    return None


# ---------------------------------------------------------------------------------------
# challenges and retries


_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://x/token",service="x"`` -> ("bearer", {realm, service}).
    The scheme is lowercased; quoted values are unescaped. Pure."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _PARAM.finditer(rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return scheme.lower(), params


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries of a request; waits base * 2**n (jittered, capped at
    ``max_delay``) between them, and never more than ``budget`` seconds in total."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0
    budget: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RetryPolicy:
        text = environ.get("PIPELINE_REGISTRY_RETRIES", "")
        if text.isdigit() and int(text) >= 1:
            return cls(attempts=int(text))
        return cls()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        wait = min(self.max_delay, self.base_delay * (2**attempt))
        wait *= 0.75 + random.random() / 2
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait


class Backoff:
    """One operation's retry state."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.attempt = 0
        self.waited = 0.0

    def next(self, retry_after: float | None = None) -> bool:
        """Sleep before another try and return True, or False when out of tries."""
        self.attempt += 1
        if self.attempt >= self.policy.attempts:
            return False
        wait = self.policy.delay(self.attempt - 1, retry_after)
        if self.waited + wait > self.policy.budget:
            return False
        time.sleep(wait)
        self.waited += wait
        return True


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    try:
        return float(value)
    except ValueError:
        return None


RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
Body = bytes | Callable[[], Iterable[bytes]] | None


# ---------------------------------------------------------------------------------------
# blob reading


class BlobReader:
    """A file-like ``read(n)`` over a streaming blob response that hashes and counts
    every byte. More bytes than ``expected_size`` or a stream that ends early raise a
    RegistryError (transient for a broken connection or a short stream)."""

    def __init__(
        self, response: httpx.Response, expected_size: int | None, fail: Callable[..., Any]
    ) -> None:
        self._chunks = response.iter_raw(CHUNK)
        self._buf = bytearray()
        self._eof = False
        self._expected = expected_size
        self._fail = fail
        self._hash = hashlib.sha256()
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
                    + f" (truncated blob): {_exc_text(exc)}",
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


def _exc_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _file_chunks(path: Path, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left is None or left > 0:
            data = f.read(CHUNK if left is None else min(CHUNK, left))
            if not data:
                return
            if left is not None:
                left -= len(data)
            yield data


# ---------------------------------------------------------------------------------------
# the client


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


class RegistryClient:
    """One registry's v2 API. Thread-safe (one httpx connection pool, a lock around
    the auth state). Use as a context manager or call :meth:`close`."""

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
    ) -> None:
        env = os.environ if environ is None else environ
        self.registry = registry
        self.api_host = DOCKER_HUB_API if registry == DEFAULT_REGISTRY else registry
        self.insecure = insecure
        # loopback: TLS when the registry speaks it, else plain HTTP (decided on the
        # first request); --insecure: plain HTTP; everything else: verified TLS
        self._probe_tls = is_loopback(self.api_host) and not insecure
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
            trust_env=not is_loopback(self.api_host),
            follow_redirects=False,
        )
        self._lock = threading.Lock()
        self._basic = False
        self._bearer: tuple[str, str] | None = None  # (realm, service)
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self.requests = 0  # requests sent, for reports

    def __enter__(self) -> RegistryClient:
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
        params: list[tuple[str, str]] = []
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
                    f"token service {realm_host}: cannot connect: {_exc_text(exc)}", repository
                ) from None
            if resp.status_code in RETRY_STATUS and backoff.next(_retry_after(resp)):
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
                if self._probe_tls and _not_tls_server(exc):
                    with self._lock:
                        self._probe_tls = False
                        self.base_url = f"http://{self.api_host}"
                    url = self.url(path_or_url)
                    continue
                if _is_tls_failure(exc):
                    raise self.error(
                        f"{what}: TLS verification failed ({_exc_text(exc)}); give the "
                        "registry's CA with --ca-bundle",
                        repository,
                        digest,
                    ) from None
                if backoff.next():
                    continue
                raise self.error(
                    f"{what}: cannot reach {self.base_url} after {backoff.attempt} "
                    f"attempt(s): {_exc_text(exc)}",
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
                if backoff.next(_retry_after(resp)):
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
                    resp.read()
                except httpx.HTTPError as exc:
                    resp.close()
                    if backoff.next():
                        continue
                    raise self.error(
                        f"{what}: connection broken: {_exc_text(exc)}",
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

    def blob_exists(self, repository: str, digest: str) -> bool:
        resp = self._send(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            what="blob check",
            scopes=(_scope(repository, "pull"),),
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
        scopes = tuple(sorted({_scope(repository, "pull,push"), _scope(source, "pull")}))
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
            scopes=(_scope(repository, "pull,push"),),
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
    ) -> int:
        """Upload the file at ``path`` as blob ``digest`` (``size`` bytes): one PUT when
        it fits ``chunk_size``, else PATCH chunks then a closing PUT. A failed upload is
        started again in a fresh session, within the retry policy. Returns the number of
        requests it took."""
        backoff = Backoff(self.retry)
        before = self.requests
        while True:
            try:
                where = location or self.start_upload(repository, digest)
                location = None
                if size <= self.chunk_size:
                    self._put_blob(repository, digest, where, size, lambda: _file_chunks(path))
                else:
                    self._chunked(repository, digest, where, size, path)
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
            _with_digest(location, digest),
            what="upload",
            scopes=(_scope(repository, "pull,push"),),
            repository=repository,
            digest=digest,
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            body=body,
            retry=False,
        )
        self._check_upload_end(resp, repository, digest)

    def _check_upload_end(self, resp: httpx.Response, repository: str, digest: str) -> None:
        if resp.status_code in RETRY_STATUS:
            raise self.error(f"upload: HTTP {resp.status_code}", repository, digest, True)
        if resp.status_code != 201:
            raise self._status_error(resp, "upload", repository, digest)
        sent = resp.headers.get("Docker-Content-Digest")
        if sent and sent != digest:
            raise self.error(f"upload: the registry stored it as {sent}", repository, digest)

    def _chunked(self, repository: str, digest: str, location: str, size: int, path: Path) -> None:
        scopes = (_scope(repository, "pull,push"),)
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
                body=lambda s=start, n=length: _file_chunks(path, s, n),  # type: ignore[misc]
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
            _with_digest(location, digest),
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
        self, repository: str, digest: str, size: int | None = None
    ) -> Iterator[BlobReader]:
        """Stream blob ``digest``: a BlobReader that hashes and counts; the caller checks
        ``.digest`` after reading to the end. Redirects are followed (Authorization is
        dropped when they leave the registry's host)."""
        resp = self._send(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            what="blob download",
            scopes=(_scope(repository, "pull"),),
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

            yield BlobReader(resp, size, fail)
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
            scopes=(_scope(repository, "pull"),),
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
        except ValueError:
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
            scopes=(_scope(repository, "pull"),),
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
            scopes=(_scope(repository, "pull,push"),),
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


def _with_digest(location: str, digest: str) -> str:
    """An upload URL plus ``digest=...``, keeping its own query (the upload state)."""
    return location + ("&" if "?" in location else "?") + urlencode({"digest": digest})


def _scope(repository: str, actions: str) -> str:
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


class Registries:
    """One client per registry host, made on first use with the same settings."""

    def __init__(
        self,
        insecure: bool = False,
        ca_bundle: Path | None = None,
        environ: Mapping[str, str] | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self.insecure = insecure
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
