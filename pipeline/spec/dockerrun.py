"""RUN in a Dockerfile: shell or exec form (the stage's SHELL for the shell form),
``--network`` and ``--mount``. Pure."""

from __future__ import annotations

import csv
import posixpath
from collections.abc import Mapping
from typing import cast

from pipeline.model import Mount, NetworkMode, Run
from pipeline.spec.dockerbase import HEREDOC, Instr, LoaderBase, Stage
from pipeline.spec.dockerwords import json_array


class RunLoader(LoaderBase):
    """RUN and its mounts."""

    def run(self, stage: Stage, ins: Instr) -> None:
        flags, rest = self.flags(ins, ("mount", "network", "security"), repeatable=("mount",))
        scope = self.scope(stage)
        if "security" in flags:
            raise self.error(ins, "RUN --security is not supported")
        network = self.value_flag(ins, flags, "network") or "default"
        if network == "host":  # the sandbox's default network is the build's policy
            network = "default"
        if network not in ("default", "none"):
            raise self.error(
                ins, f'RUN --network="{network}" is not supported (use none, host or default)'
            )
        mounts = tuple(self.mount(ins, v or "", scope) for v in flags.get("mount", []))
        try:
            argv = json_array(rest)
        except ValueError as exc:
            raise self.error(ins, f"RUN: {exc}") from None
        command: str | tuple[str, ...]
        if argv is not None:
            if not argv:
                raise self.error(ins, "RUN needs a command")
            command = argv
        else:
            command = rest.strip()
            if not command:
                raise self.error(ins, "RUN needs a command")
            if ins.heredocs:
                command = self.heredoc_command(ins, command, stage.shell)
            elif stage.shell != ("/bin/sh", "-c"):
                command = (*stage.shell, command)
        env = tuple(
            sorted(
                (k, v)
                for k, v in stage.args.items()
                if v is not None and (k not in stage.env or k in stage.arg_wins)
            )
        )
        assert network in ("default", "none")
        stage.steps.append(Run(command, cast(NetworkMode, network), mounts, env, ins.loc))

    def heredoc_command(
        self, ins: Instr, command: str, shell: tuple[str, ...]
    ) -> str | tuple[str, ...]:
        """RUN with heredocs, as BuildKit runs it: ``RUN <<EOF`` alone runs the body
        with the shell (a body starting with ``#!`` runs with that interpreter);
        otherwise the shell gets the command with the heredocs after it."""
        if len(ins.heredocs) == 1 and HEREDOC.match(command):
            body = ins.heredocs[0].body
            if body.startswith("#!"):
                first = body.split("\n", 1)[0][2:].strip()
                interpreter = tuple(first.split(None, 1))
                if not interpreter:
                    raise self.error(ins, "RUN: the heredoc's #! line names no interpreter")
                return (*interpreter, "-c", body)
            return body if shell == ("/bin/sh", "-c") else (*shell, body)
        full = command + "".join(f"\n{h.body}{h.name}" for h in ins.heredocs)
        return full if shell == ("/bin/sh", "-c") else (*shell, full)

    def mount(self, ins: Instr, spec: str, scope: Mapping[str, str]) -> Mount:
        try:
            fields = next(csv.reader([self.sub(ins, spec, scope)]))
        except (csv.Error, StopIteration):
            raise self.error(ins, f'RUN --mount="{spec}": cannot parse') from None
        opts: dict[str, str] = {}
        for f in fields:
            key, _, value = f.strip().partition("=")
            opts[key.lower()] = value
        kind = opts.pop("type", "bind")
        if kind == "secret":
            raise self.error(ins, "RUN --mount=type=secret is not supported in Dockerfiles yet")
        if kind != "cache":
            raise self.error(ins, f"RUN --mount=type={kind} is not supported (only type=cache)")
        target = ""
        for key in ("target", "dst", "destination"):
            target = opts.pop(key, target)
        mount_id = opts.pop("id", "")
        sharing = opts.pop("sharing", "shared")
        if sharing not in ("shared", "private", "locked"):
            raise self.error(
                ins, f'RUN --mount: sharing="{sharing}" is not one of shared, private, locked'
            )
        if opts:
            bad = sorted(opts)[0]
            raise self.error(ins, f'RUN --mount: option "{bad}" is not supported for cache mounts')
        if not target:
            raise self.error(ins, "RUN --mount=type=cache needs a target")
        if not target.startswith("/"):
            raise self.error(ins, f'RUN --mount: target "{target}" must be an absolute path')
        return Mount("cache", posixpath.normpath(target), mount_id)
