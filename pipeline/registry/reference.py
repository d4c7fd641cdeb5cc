"""Registry references (``registry/repository[:tag][@digest]``), the registry's limits
and media types, and the one-line :class:`RegistryError`. Pure.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from pipeline.digest import is_digest
from pipeline.errors import PipelineError, UsageError
from pipeline.oci.media import INDEX_TYPES, MANIFEST_TYPES

DEFAULT_REGISTRY = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

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
