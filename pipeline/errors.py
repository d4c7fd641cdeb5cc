"""Exceptions that carry data and build their own one-line message.

Every message starts with the location it is about (``specs/api.hcl:12:3: ...``,
or a store path / image reference), so a user can jump straight to it.
The CLI prints ``str(exc)`` (through :func:`escape`) and exits with ``exc.exit_code``;
no tracebacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """A position in a spec file (1-based line and column; 0 means unknown)."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line and self.col:
            return f"{self.file}:{self.line}:{self.col}"
        if self.line:
            return f"{self.file}:{self.line}"
        return self.file


class PipelineError(Exception):
    """Base of every error the CLI reports as one line. Exit status 1."""

    exit_code = 1


class SpecError(PipelineError):
    """Bad input in a spec or Dockerfile. Exit status 2.

    ``str()`` is ``"<loc>: <block>: <message> (did you mean "<hint>"?)"``, parts
    left out when absent.
    """

    exit_code = 2

    def __init__(
        self,
        loc: Location | None,
        message: str,
        block: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.loc = loc
        self.message = message
        self.block = block
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.loc is not None:
            parts.append(str(self.loc))
        if self.block:
            parts.append(self.block)
        text = self.message
        if self.hint:
            text += f' (did you mean "{self.hint}"?)'
        parts.append(text)
        return ": ".join(parts)


class UsageError(PipelineError):
    """Bad command-line input (unknown app, bad --set). Exit status 2."""

    exit_code = 2


class UnsafePathError(PipelineError):
    """A path from a tarball, build context or spec that would escape its root."""

    def __init__(self, where: str, path: str, reason: str) -> None:
        self.where = where
        self.path = path
        self.reason = reason
        super().__init__(f"{where}: refused path {path!r}: {reason}")


class StoreError(PipelineError):
    """The store is missing something, or holds bytes that fail verification."""


class SandboxError(PipelineError):
    """The sandbox could not be set up (missing overlayfs, not root, ...)."""


@dataclass(frozen=True)
class StepFailure:
    """Why one build step failed: enough to print a useful error."""

    apps: tuple[str, ...]
    step: str
    loc: Location | None
    exit_code: int | None
    output_tail: tuple[str, ...]
    reason: str = ""

    def render(self) -> str:
        where = f"{self.loc}: " if self.loc else ""
        apps = ", ".join(self.apps) or "-"
        status = f"exit code {self.exit_code}" if self.exit_code is not None else self.reason
        lines = [f"{where}step {self.step!r} failed ({status}); apps: {apps}"]
        lines.extend(f"    | {line}" for line in self.output_tail)
        return "\n".join(lines)


class BuildFailed(PipelineError):
    """One or more steps failed; other branches finished. With ``logs_shown`` (the
    progress printed each failure's log as it failed) the message is one line each."""

    def __init__(self, failures: Sequence[StepFailure], logs_shown: bool = False) -> None:
        self.failures = tuple(failures)
        lines = [f.render().split("\n", 1)[0] if logs_shown else f.render() for f in failures]
        if logs_shown and lines:
            lines.append(f"{len(lines)} step(s) failed; their output is above")
        super().__init__("\n".join(lines))


# Bidirectional-text controls (Trojan Source, CVE-2021-42574) and other invisible
# format characters that could make a message read differently from what it says.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def escape(text: str, keep_newlines: bool = False) -> str:
    """``text`` safe to print on a terminal: control characters (C0, DEL, C1; newline
    only unless ``keep_newlines``), bidi and other invisible format characters become
    ``\\xNN`` / ``\\uNNNN``; bytes that were not UTF-8 (``surrogateescape``) become
    ``\\xNN``. Everything else, including non-ASCII letters, is kept."""
    import unicodedata

    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch == "\n" and keep_newlines:
            out.append(ch)
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte carried by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        elif code >= 0xA0 and (
            ch in _BIDI or unicodedata.category(ch) in ("Cf", "Cs", "Co", "Zl", "Zp")
        ):
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def did_you_mean(word: str, choices: Sequence[str]) -> str | None:
    """The closest of ``choices`` to ``word``, or None when nothing is close."""
    import difflib

    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None
