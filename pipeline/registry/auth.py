"""Credentials and authentication challenges.

Credentials come from ``PIPELINE_REGISTRY_USER``/``PIPELINE_REGISTRY_PASSWORD`` or the
docker ``config.json`` (``auths``); they are never printed or stored. Challenges are
parsed from ``WWW-Authenticate`` (Basic, Bearer with realm/service/scope).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.registry.reference import RegistryError

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
