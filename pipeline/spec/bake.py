"""A bake definition: the files evaluated, targets merged and resolved the way
``docker buildx bake`` resolves them, ready to print (``--print``) or to lower into
the fleet. Pure apart from reading the environment mapping it is given.

Resolution, in bake's order: repeated blocks of a target merge in file order; a
matrix block's label becomes a group of the targets it made; the names asked for
(default: ``default``) expand through groups (a group wins over a target of the same
name) and ``*``/``?``/``[...]`` patterns; each target is its ``inherits`` parents
merged in order, then itself, then its ``--set`` overrides, then normalised (lists
deduplicated, empty contexts and null args dropped) with ``context`` defaulting to
``.`` and ``dockerfile`` to ``Dockerfile``; a ``contexts`` value ``target:NAME``
brings NAME in as a linked target (built, not exported).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import SpecError, UsageError, did_you_mean
from pipeline.hcl import cty
from pipeline.hcl.values import BlockRef, File
from pipeline.oci.platform import platform_args
from pipeline.spec.bakeeval import BakeEvaluator, EvalBlock, Evaluated
from pipeline.spec.baketarget import (
    Override,
    Target,
    apply_overrides,
    normalize,
    parse_overrides,
    print_target,
    read_value,
    target_from,
)


@dataclass
class Definition:
    """The resolved definition. ``requested``: the targets asked for (groups expanded);
    ``linked``: targets only reached through ``target:`` contexts."""

    targets: dict[str, Target]
    groups: dict[str, dict[str, Any]]
    requested: list[str]
    linked: list[str]
    evaluated: Evaluated
    all_targets: list[str] = field(default_factory=list)

    def print_json(self) -> str:
        """``--print``: bake's JSON, keys in bake's order, indented by two spaces."""
        data: dict[str, Any] = {}
        if self.groups:
            data["group"] = {k: self.groups[k] for k in sorted(self.groups)}
        data["target"] = {k: print_target(self.targets[k]) for k in sorted(self.targets)}
        text = json.dumps(data, indent=2, ensure_ascii=False)
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def builtins() -> dict[str, str]:
    plat = platform_args()
    return {
        "BAKE_CMD_CONTEXT": "cwd://",
        "BAKE_LOCAL_PLATFORM": plat.get("BUILDPLATFORM", "linux/amd64"),
    }


def evaluate_files(
    files: Sequence[tuple[File, Path]],
    environ: Mapping[str, str],
    cli_vars: Mapping[str, str] | None = None,
) -> Evaluated:
    return BakeEvaluator(files, environ, dict(cli_vars or {}), builtins()).run()


class _Resolver:
    def __init__(
        self, ev: Evaluated, overrides: Sequence[Override], environ: Mapping[str, str]
    ) -> None:
        self.ev = ev
        self.environ = environ
        self.raw: dict[str, Target] = {}
        for inst in ev.targets:
            t = _target(inst)
            if inst.name in self.raw:
                self.raw[inst.name].merge(t)
            else:
                self.raw[inst.name] = t
        self.groups: dict[str, dict[str, Any]] = {}
        self.group_where: dict[str, EvalBlock] = {}
        for inst in ev.groups:
            entry = self.groups.setdefault(inst.name, {"targets": []})
            self.group_where.setdefault(inst.name, inst)
            for key, value in inst.attrs.items():
                if key not in ("targets", "description"):
                    raise SpecError(
                        inst.loc(key),
                        f'unknown attribute "{key}"',
                        block=inst.label,
                        hint=did_you_mean(key, ["description", "targets"]),
                    )
                kind = "strings" if key == "targets" else "str"
                if key == "targets" and cty.is_sequence(value.type) and not value.is_null:
                    value = cty.tuple_of(  # app.NAME / image.NAME references name apps
                        cty.string(v.data.name) if isinstance(v.data, BlockRef) else v
                        for v in value.items
                    )
                got = read_value(key, kind, value, inst.loc(key), inst.label)
                if key == "targets":
                    entry["targets"] = list(dict.fromkeys([*entry["targets"], *(got or [])]))
                elif got:
                    entry["description"] = got
        for origin, names in ev.renamed.items():
            entry = self.groups.setdefault(origin, {"targets": []})
            entry["targets"] = list(dict.fromkeys([*entry["targets"], *names]))
        self.overrides: dict[str, list[Override]] = {}
        for o in overrides:
            for name in self.match_targets(o.pattern):
                self.overrides.setdefault(name, []).append(o)
        self.resolved: dict[str, Target] = {}
        self.final: dict[str, Target] = {}

    def match_targets(self, pattern: str) -> list[str]:
        if pattern in self.raw:
            return [pattern]
        found = [n for n in self.raw if fnmatch.fnmatchcase(n, pattern)]
        if not found:
            hint = did_you_mean(pattern, sorted(self.raw))
            more = f' (did you mean "{hint}"?)' if hint else ""
            raise UsageError(f'--set {pattern}: no target matches "{pattern}"{more}')
        return found

    def match_names(self, pattern: str) -> list[str]:
        if not any(c in pattern for c in "*?["):
            return [pattern]
        found = [n for n in self.groups if fnmatch.fnmatchcase(n, pattern)]
        found += [n for n in self.raw if fnmatch.fnmatchcase(n, pattern)]
        if not found:
            raise UsageError(f"{pattern}: no target or group matches")
        return found

    def expand(self, name: str, trail: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
        """(targets, groups) a name stands for."""
        if name not in self.groups:
            return [name], []
        if name in trail:
            inst = self.group_where.get(name)
            raise SpecError(
                inst.loc("targets") if inst else None,
                "group cycle: " + " -> ".join([*trail[trail.index(name) :], name]),
            )
        targets: list[str] = []
        groups = [name]
        for member in self.groups[name]["targets"]:
            t, g = self.expand(member, (*trail, name))
            targets += [x for x in t if x not in targets]
            groups += [x for x in g if x not in groups]
        return targets, groups

    def resolve(self, name: str) -> Target:
        """The target as bake's ResolveTarget gives it: merged, with defaults."""
        if name not in self.final:
            t = self.merged(name).copy()
            if t.values.get("context") is None:
                t.values["context"] = "."
            if not t.values.get("dockerfile"):
                t.values["dockerfile"] = "Dockerfile"
            self.final[name] = t
        return self.final[name]

    def merged(self, name: str, trail: tuple[str, ...] = ()) -> Target:
        if name in self.resolved:
            return self.resolved[name]
        if name not in self.raw:
            choices = sorted({*self.raw, *self.groups})
            raise UsageError(
                f'failed to find target "{name}"'
                + (f' (did you mean "{h}"?)' if (h := did_you_mean(name, choices)) else "")
            )
        if name in trail:
            first = self.raw[trail[0]]
            raise SpecError(
                first.where.get("inherits"),
                "inherits cycle: " + " -> ".join([*trail[trail.index(name) :], name]),
            )
        own = self.raw[name]
        merged = Target(name, directory=own.directory)
        for parent in own.values.get("inherits") or []:
            merged.merge(self.merged(parent, (*trail, name)).copy())
        mine = own.copy()
        mine.values.pop("inherits", None)
        merged.merge(mine)
        apply_overrides(merged, self.overrides.get(name, []), self.environ)
        normalize(merged)
        merged.values.pop("inherits", None)
        self.resolved[name] = merged
        return merged


def _target(inst: EvalBlock) -> Target:
    locs = {k: inst.loc(k) for k in inst.attrs}
    return target_from(inst.name, inst.attrs, locs, inst.label, inst.volatile, str(inst.directory))


def resolve(
    ev: Evaluated,
    names: Sequence[str],
    overrides: Sequence[str],
    environ: Mapping[str, str],
    natives: Mapping[str, str] | None = None,
    use_default: bool = True,
) -> Definition:
    """The definition for the names asked for (default: ``default``). ``natives``:
    names of the fleet's own apps and images (name -> id) a group may list."""
    r = _Resolver(ev, parse_overrides(overrides), environ)
    known_natives = natives or {}
    asked: list[str] = []
    for name in names or (["default"] if use_default else []):
        asked += [n for n in r.match_names(name.replace(".", "_")) if n not in asked]
    requested: list[str] = []
    groups: dict[str, dict[str, Any]] = {}
    for name in asked:
        targets, group_names = r.expand(name)
        for t in targets:
            if t in known_natives and t not in r.raw:
                if t not in requested:
                    requested.append(t)
                continue
            r.resolve(t)
            if t not in requested:
                requested.append(t)
        for g in group_names:
            groups[g] = r.groups[g]
    default = [n for n in asked if not (n == "default" and "default" in groups)]
    if default:
        entry = groups.setdefault("default", {"targets": []})
        entry["targets"] = sorted(dict.fromkeys([*entry["targets"], *default]))
    linked: list[str] = []

    def link(name: str, trail: tuple[str, ...]) -> None:
        target = r.final[name]
        for ctx_name, value in (target.values.get("contexts") or {}).items():
            if not value.startswith("target:"):
                continue
            other = value.removeprefix("target:")
            where = target.where.get("contexts")
            if other == name:
                raise SpecError(where, f'target "{name}": contexts.{ctx_name} links to itself')
            if other in trail:
                raise SpecError(where, f"target link cycle: {' -> '.join([*trail, other])}")
            linked_target = r.resolve(other)
            if other not in requested and other not in linked:
                linked.append(other)
                linked_target.values["output"] = [{"type": "cacheonly"}]  # built, not exported
            link(other, (*trail, other))

    for name in [n for n in requested if n in r.final]:
        link(name, (name,))
    chosen = {n: r.final[n] for n in [*requested, *linked] if n in r.final}
    return Definition(chosen, groups, requested, linked, ev, sorted(r.raw))
