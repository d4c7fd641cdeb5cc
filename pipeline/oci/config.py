"""The runtime part of an image config as an immutable value, with Docker's semantics
for metadata steps. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pipeline.model import Meta, Pairs

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The PATH a step sees when the image sets none (Docker's and BuildKit's default)."""


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an OCI image config, as immutable values."""

    env: Pairs = ()
    workdir: str = ""
    user: str = ""
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    expose: tuple[str, ...] = ()
    labels: Pairs = ()
    healthcheck: str = ""  # the Healthcheck object as canonical JSON ("" = none)
    stop_signal: str = ""
    volumes: tuple[str, ...] = ()
    shell: tuple[str, ...] = ()  # () = Docker's default ["/bin/sh", "-c"]
    onbuild: tuple[str, ...] = ()
    author: str = ""  # the top-level ``author`` of the image config

    def apply(self, meta: Meta) -> ImageConfig:
        """The config after one metadata step (Docker semantics)."""
        v = meta.value
        if meta.field == "env":
            return replace(self, env=_merge_pairs(self.env, as_pairs(v)))
        if meta.field == "labels":
            return replace(self, labels=_merge_pairs(self.labels, as_pairs(v)))
        if meta.field == "workdir":
            assert isinstance(v, str)
            return replace(self, workdir=join_path(self.workdir or "/", v))
        if meta.field == "user":
            assert isinstance(v, str)
            return replace(self, user=v)
        if meta.field == "entrypoint":
            return replace(self, entrypoint=_strings(v), cmd=None)
        if meta.field == "entrypoint-keep-cmd":
            return replace(self, entrypoint=_strings(v))
        if meta.field == "healthcheck":
            assert isinstance(v, str)
            return replace(self, healthcheck=v)
        if meta.field == "stopsignal":
            assert isinstance(v, str)
            return replace(self, stop_signal=v)
        if meta.field == "volumes":
            return replace(self, volumes=tuple(sorted(set(self.volumes) | set(_strings(v)))))
        if meta.field == "shell":
            return replace(self, shell=_strings(v))
        if meta.field == "onbuild":
            new = _strings(v)
            return replace(self, onbuild=(*self.onbuild, *new) if new else ())
        if meta.field == "author":
            assert isinstance(v, str)
            return replace(self, author=v)
        if meta.field == "cmd":
            return replace(self, cmd=_strings(v))
        if meta.field == "expose":
            return replace(self, expose=tuple(sorted(set(self.expose) | set(_strings(v)))))
        raise ValueError(f"unknown metadata field {meta.field!r}")

    def run_env(self, extra: Pairs = ()) -> Pairs:
        """The environment a RUN step sees: the image env, step-only vars, and PATH."""
        env = dict(self.env)
        env.update(extra)
        env.setdefault("PATH", DEFAULT_PATH)
        return tuple(sorted(env.items()))

    def to_oci(self) -> dict[str, Any]:
        """The ``config`` object of an OCI image config (only fields that are set)."""
        out: dict[str, Any] = {}
        if self.env:
            out["Env"] = [f"{k}={v}" for k, v in self.env]
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.user:
            out["User"] = self.user
        if self.expose:
            out["ExposedPorts"] = {p: {} for p in self.expose}
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.healthcheck:
            out["Healthcheck"] = json.loads(self.healthcheck)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.volumes:
            out["Volumes"] = {p: {} for p in self.volumes}
        if self.shell:
            out["Shell"] = list(self.shell)
        if self.onbuild:
            out["OnBuild"] = list(self.onbuild)
        return out

    @classmethod
    def from_oci(cls, config: Mapping[str, Any], author: str = "") -> ImageConfig:
        """Read the ``config`` object of an OCI image config (``author``: the image
        config's top-level field)."""
        env = []
        for item in config.get("Env") or ():
            k, _, v = str(item).partition("=")
            env.append((k, v))
        ep = config.get("Entrypoint")
        cmd = config.get("Cmd")
        return cls(
            env=tuple(env),
            workdir=str(config.get("WorkingDir") or ""),
            user=str(config.get("User") or ""),
            entrypoint=tuple(ep) if ep is not None else None,
            cmd=tuple(cmd) if cmd is not None else None,
            expose=tuple(sorted(config.get("ExposedPorts") or {})),
            labels=tuple(sorted((config.get("Labels") or {}).items())),
            healthcheck=_json_text(config.get("Healthcheck")),
            stop_signal=str(config.get("StopSignal") or ""),
            volumes=tuple(sorted(config.get("Volumes") or {})),
            shell=tuple(str(x) for x in config.get("Shell") or ()),
            onbuild=tuple(str(x) for x in config.get("OnBuild") or ()),
            author=str(author or ""),
        )


def _json_text(value: object) -> str:
    if not value:
        return ""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def as_pairs(v: object) -> Pairs:
    assert isinstance(v, tuple)
    return tuple((str(a), str(b)) for a, b in v)


def _strings(v: object) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    assert isinstance(v, tuple)
    return tuple(str(x) for x in v)


def _merge_pairs(old: Pairs, new: Pairs) -> Pairs:
    merged = dict(old)
    merged.update(new)
    return tuple(merged.items())


def join_path(base: str, path: str) -> str:
    """``path`` made absolute against ``base``, normalised, never above ``/``."""
    parts: list[str] = []
    full = path if path.startswith("/") else f"{base.rstrip('/')}/{path}"
    for part in full.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of an image's history: what made it, whether it made a layer, and
    (for a layer we built) the DAG node that made it."""

    created_by: str
    empty_layer: bool
    node: str | None = None
