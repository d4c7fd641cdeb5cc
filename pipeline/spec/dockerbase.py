"""The Dockerfile loader's shared parts: a stage being read, one instruction, and the
loader's state and helpers (errors located at the instruction, substitution, ARG/ENV
scope, flag parsing). The instruction handlers build on :class:`LoaderBase` in
:mod:`.dockerrun`, :mod:`.dockercopy` and :mod:`.dockerfile`. Pure apart from
reading the context's ignore file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import Location, SpecError, did_you_mean
from pipeline.fs.context import read_ignore
from pipeline.model import BaseRef, ImageDef, Step
from pipeline.oci.config import DEFAULT_PATH
from pipeline.oci.platform import platform_args
from pipeline.spec.dockercontexts import NamedContext
from pipeline.spec.dockerlines import Heredoc
from pipeline.spec.dockerwords import expand, split_flags

HEREDOC = re.compile(r"^\d*<<-?[^<]+$")
"""A word that is a heredoc marker (``<<EOF``, ``<<-EOF``, ``<<"EOF"``)."""


@dataclass
class Stage:
    index: int
    name: str
    base: BaseRef
    loc: Location
    env: dict[str, str] = field(default_factory=dict)  # ENV so far, base stages included
    args: dict[str, str | None] = field(default_factory=dict)  # ARGs declared in this stage
    steps: list[Step] = field(default_factory=list)
    shell: tuple[str, ...] = ("/bin/sh", "-c")  # SHELL so far, base stages included
    onbuild: tuple[str, ...] = ()  # ONBUILD triggers so far (FROM this stage runs them)
    arg_wins: set[str] = field(default_factory=set)  # ARGs declared after an ENV of theirs
    cmd_set: bool = False  # a CMD was given in this stage (ENTRYPOINT then keeps it)


@dataclass(frozen=True)
class Instr:
    word: str
    value: str
    loc: Location
    heredocs: tuple[Heredoc, ...] = ()


class LoaderBase:
    """The state and helpers every instruction handler shares."""

    def __init__(
        self,
        path: Path,
        app_id: str,
        context: Path,
        build_args: Mapping[str, str],
        escape: str,
        contexts: Mapping[str, NamedContext] | None = None,
    ) -> None:
        self.path = path
        self.contexts = dict(contexts or {})
        self.extra: dict[str, ImageDef] = {}  # images made for named contexts
        self.app_id = app_id
        self.block = f'app "{app_id.split(".", 1)[-1]}"'
        self.context = Path(os.path.abspath(context))
        self.build_args = dict(build_args)
        self.escape = escape
        self.meta: dict[str, str | None] = {}
        for k, v in platform_args().items():
            self.meta[k] = self.build_args.get(k, v)
        self.stages: list[Stage] = []
        self.by_name: dict[str, int] = {}
        self.later_names: set[str] = set()  # every AS name in the file, for messages
        self._ignore: tuple[str, ...] | None = None

    # -- helpers

    def error(self, at: Instr | Location, message: str, hint: str | None = None) -> SpecError:
        loc = at.loc if isinstance(at, Instr) else at
        return SpecError(loc, message, block=self.block, hint=hint)

    def sub(self, ins: Instr, text: str, env: Mapping[str, str]) -> str:
        try:
            return expand(text, env, self.escape)
        except ValueError as exc:
            raise self.error(ins, f"{ins.word}: {exc}") from None

    def scope(self, stage: Stage) -> dict[str, str]:
        """Variables an instruction of ``stage`` can substitute: ENV wins over an
        earlier ARG, a later ARG over ENV (as BuildKit does)."""
        out = {"PATH": DEFAULT_PATH}
        out |= {k: v for k, v in stage.args.items() if v is not None}
        out |= stage.env
        out |= {k: v for k in stage.arg_wins if (v := stage.args.get(k)) is not None}
        return out

    def meta_scope(self) -> dict[str, str]:
        return {k: v for k, v in self.meta.items() if v is not None}

    def flags(
        self, ins: Instr, allowed: tuple[str, ...], repeatable: tuple[str, ...] = ()
    ) -> tuple[dict[str, list[str | None]], str]:
        try:
            found, rest = split_flags(ins.value)
        except ValueError as exc:
            raise self.error(ins, f"{ins.word}: {exc}") from None
        out: dict[str, list[str | None]] = {}
        for name, value in found:
            if name not in allowed:
                raise self.error(
                    ins,
                    f'unknown flag "--{name}" for {ins.word}',
                    hint=(h := did_you_mean(name, allowed)) and f"--{h}",
                )
            if name in out and name not in repeatable:
                raise self.error(ins, f'{ins.word}: flag "--{name}" given twice')
            out.setdefault(name, []).append(value)
        return out, rest

    def value_flag(self, ins: Instr, flags: dict[str, list[str | None]], name: str) -> str | None:
        if name not in flags:
            return None
        value = flags[name][0]
        if value is None or value == "":
            raise self.error(ins, f'{ins.word}: flag "--{name}" needs a value')
        return value

    def ignore(self) -> tuple[str, ...]:
        if self._ignore is None:
            self._ignore = read_ignore(self.context)
        return self._ignore

    def stage_id(self, stage: Stage, last: bool) -> str:
        if last:
            return self.app_id
        return f"{self.app_id}/{stage.name or stage.index}"
