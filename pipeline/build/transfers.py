"""Byte progress of registry transfers (push, pull, cache): the callback type the
build functions take, and the per-blob adapter the registry client is given. Pure."""

from __future__ import annotations

from collections.abc import Callable

TransferProgress = Callable[[str, int, int], None]
"""``(label, bytes done, bytes total)``: cumulative for the current attempt (a retried
transfer starts again from 0); the last call has ``done == total``."""


def blob_progress(
    progress: TransferProgress | None, label: str, total: int
) -> Callable[[int], None] | None:
    """A ``done -> None`` callback for one blob reporting under ``label``, announced
    at 0 bytes; None without ``progress``."""
    if progress is None:
        return None
    sink = progress
    sink(label, 0, total)

    def advance(done: int) -> None:
        sink(label, min(done, total), total)

    return advance
