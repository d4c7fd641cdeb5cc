"""The resource limits every reader of hostile input enforces, and where they come from.

One frozen :class:`Limits` value holds them all; :func:`current` reads it from the
environment (``PIPELINE_LIMIT_<NAME>``, a whole number, suffixes ``K``/``M``/``G``/``T``
for powers of 1024 allowed), falling back to the defaults below. ``docs/limits.md``
gives the reason for each default. Pure apart from :func:`current` reading
``os.environ``; a bad value is a one-line UsageError naming the variable.

A refusal because of a limit is the reader's usual one-line error (SpecError for
specs, StoreError for archives) naming the input's location, what was found, and,
through :func:`over`, the limit and the variable that raises it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from pipeline.errors import UsageError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

ENV_PREFIX = "PIPELINE_LIMIT_"


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit, in bytes or counts. Field ``x`` is set by ``PIPELINE_LIMIT_X``."""

    # spec files (HCL) and Dockerfiles
    spec_bytes: int = 1 * MiB  # one file
    spec_string_chars: int = 256 * KiB  # characters in one quoted string or heredoc
    spec_depth: int = 128  # syntax-tree depth (blocks, brackets, operators)
    spec_blocks: int = 10_000  # blocks in one file; apps one matrix makes
    # archives: per layer tar or image archive
    archive_entries: int = 1_000_000
    path_bytes: int = 4095  # one entry's path (Linux PATH_MAX, less its NUL)
    path_depth: int = 1024  # components in one entry's path
    header_bytes: int = 1 * MiB  # one PAX extended header or GNU long name
    unpacked_bytes: int = 1 * TiB  # bytes of file data one archive may unpack
    free_reserve_bytes: int = 256 * MiB  # free space to leave on the store's disk
    ratio: int = 250  # decompressed bytes per compressed byte
    ratio_grace_bytes: int = 64 * MiB  # output below which the ratio is not checked
    # the store
    index_wait_seconds: int = 60  # how long to wait for another process's index lock

    @staticmethod
    def variable(name: str) -> str:
        return ENV_PREFIX + name.upper()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Limits:
        """Defaults overridden by ``PIPELINE_LIMIT_*`` in ``environ``; UsageError naming
        the variable for a value that is not a positive whole number (with suffix)."""
        values: dict[str, int] = {}
        for f in fields(cls):
            var = cls.variable(f.name)
            text = environ.get(var, "").strip()
            if text:
                values[f.name] = _parse_size(var, text)
        return cls(**values)


_SUFFIXES = {"K": KiB, "M": MiB, "G": GiB, "T": TiB}


def _parse_size(var: str, text: str) -> int:
    number, mult = text, 1
    if text[-1:].upper() in _SUFFIXES:
        number, mult = text[:-1], _SUFFIXES[text[-1].upper()]
    if not number.isdigit() or len(number) > 18 or int(number) == 0:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise UsageError(
            f"{var}={shown!r}: expected a positive whole number (optionally with K, M, G or T)"
        )
    return int(number) * mult


_cached: tuple[tuple[tuple[str, str], ...], Limits] | None = None


def current() -> Limits:
    """The limits for this process: :meth:`Limits.from_environ` over ``os.environ``
    (re-read when a ``PIPELINE_LIMIT_*`` variable changes)."""
    global _cached
    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX)))
    if _cached is None or _cached[0] != key:
        _cached = (key, Limits.from_environ(os.environ))
    return _cached[1]


def over(name: str, value: int, unit: str = "bytes") -> str:
    """``"the limit is 1 MiB; PIPELINE_LIMIT_X raises it"`` for limit field ``name``."""
    shown = human(value) if unit == "bytes" else f"{value:,} {unit}".rstrip()
    return f"the limit is {shown}; {Limits.variable(name)} raises it"


def human(n: int) -> str:
    """``n`` bytes in the largest power-of-1024 unit that divides it evenly, else bytes."""
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def shown_name(name: str, limit: int = 120) -> str:
    """An entry or file name short enough for a one-line message."""
    if len(name) <= limit:
        return name
    return f"{name[: limit // 2]}...({len(name)} characters)...{name[-20:]}"
