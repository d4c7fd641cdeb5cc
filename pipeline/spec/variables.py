"""The loader's state and its first stage: collecting blocks from the parsed files,
``variable`` blocks (default < environment < ``--set``), ``locals``, and the typed
evaluation of attributes that every later stage uses. Pure apart from reading the
environment mapping it is given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from pipeline.errors import Location, SpecError, did_you_mean
from pipeline.hcl.evaluator import evaluate
from pipeline.hcl.values import (
    Attribute,
    Block,
    Call,
    File,
    Namespace,
    Scope,
    Template,
    Value,
    Variable,
    describe,
)
from pipeline.spec.schema import (
    BAD,
    EXPECTED,
    REQUIRED,
    TOP_BLOCKS,
    VARIABLE_ATTRS,
    VARIABLE_TYPES,
    Decl,
    Mismatch,
    Val,
    check_value,
    convert_default,
    convert_text,
    in_block,
    type_of,
    type_phrase,
    valid_name,
)

# --------------------------------------------------------------------------- the loader


@dataclass
class LoaderBase:
    files: Sequence[File]
    overrides: dict[str, str]
    environ: dict[str, str]
    decls: dict[tuple[str, str], Decl] = field(default_factory=dict)
    locals: dict[str, tuple[Attribute, Path]] = field(default_factory=dict)
    local_values: dict[str, Value] = field(default_factory=dict)
    local_stack: list[str] = field(default_factory=list)
    variables: dict[str, Value] = field(default_factory=dict)
    scope: dict[str, Value | Namespace] = field(default_factory=dict)
    matrix_apps: dict[str, tuple[tuple[str, Mapping[str, str]], ...]] = field(default_factory=dict)
    app_names: dict[str, Location] = field(default_factory=dict)
    resolved: dict[str, dict[str, Val]] = field(default_factory=dict)
    ignores: dict[Path, tuple[str, ...]] = field(default_factory=dict)
    factoring: bool = True  # order-based sharing of apt sets (spec.lower.order_apt)
    unfactored: set[str] = field(default_factory=set)  # apps with factoring = false

    def of_kind(self, kind: str) -> list[Decl]:
        return [d for (k, _), d in self.decls.items() if k == kind]

    def collect(self, file: File) -> None:
        directory = Path(os.path.abspath(Path(file.path).parent))
        for item in file.body:
            if isinstance(item, Attribute):
                raise SpecError(
                    item.loc,
                    f'unexpected attribute "{item.name}" at the top level '
                    "(attributes belong inside a block)",
                )
            kind = item.type
            if kind not in TOP_BLOCKS:
                raise SpecError(
                    item.loc,
                    f'unknown block type "{kind}"',
                    hint=did_you_mean(kind, TOP_BLOCKS),
                )
            if kind == "locals":
                self.collect_locals(item, directory)
                continue
            if len(item.labels) != 1:
                raise SpecError(
                    item.loc, f'{kind} blocks take exactly one name: {kind} "NAME" {{ ... }}'
                )
            name = item.labels[0]
            if not valid_name(name):
                raise SpecError(
                    item.loc,
                    f'invalid name "{name}": use letters, digits, "_" and "-", '
                    "starting with a letter",
                    block=item.label(),
                )
            previous = self.decls.get((kind, name))
            if previous is not None:
                raise SpecError(
                    item.loc, f"already defined at {previous.block.loc}", block=item.label()
                )
            self.decls[(kind, name)] = Decl(kind, name, item, directory)
            if kind == "app":
                self.app_names[name] = item.loc

    def collect_locals(self, block: Block, directory: Path) -> None:
        if block.labels:
            raise SpecError(block.loc, "a locals block takes no name", block="locals")
        for nested in block.blocks:
            raise SpecError(nested.loc, f'unexpected block "{nested.type}"', block="locals")
        for attr in block.attributes:
            previous = self.locals.get(attr.name)
            if previous is not None:
                raise SpecError(
                    attr.loc,
                    f'local "{attr.name}" is already defined at {previous[0].loc}',
                    block="locals",
                )
            self.locals[attr.name] = (attr, directory)

    # ---- variables and locals

    def load_variables(self) -> None:
        declared = {d.name for d in self.of_kind("variable")}
        for name in self.overrides:
            if name not in declared:
                raise SpecError(
                    None,
                    f'--set {name}: no variable "{name}" is declared in the specs',
                    hint=did_you_mean(name, sorted(declared)),
                )
        for decl in self.of_kind("variable"):
            with in_block(decl.label):
                value = self.variable(decl)
            if value is REQUIRED:
                raise SpecError(
                    decl.block.loc,
                    f'variable "{decl.name}" is required: '
                    f"set it with --set {decl.name}=... or the environment",
                )
            self.variables[decl.name] = value  # type: ignore[assignment]

    def variable(self, decl: Decl) -> object:
        """The variable's value (``--set`` > environment > default), or _REQUIRED."""
        for nested in decl.block.blocks:
            raise SpecError(nested.loc, f'unexpected block "{nested.type}"')
        for attr in decl.block.attributes:
            if attr.name not in VARIABLE_ATTRS:
                raise SpecError(
                    attr.loc,
                    f'unknown attribute "{attr.name}"',
                    hint=did_you_mean(attr.name, VARIABLE_ATTRS),
                )
        type_attr, default_attr = decl.attr("type"), decl.attr("default")
        type_name = self.variable_type(type_attr) if type_attr else None
        desc = decl.attr("description")
        if desc is not None:
            self.checked(desc, "string", {}, "")
        default: Value = None
        if default_attr is not None:
            default = evaluate(default_attr.expr, {})
            if type_name is None:
                type_name = type_of(default)
            elif default is not None:
                converted = convert_default(default, type_name)
                if converted is BAD:
                    raise SpecError(
                        default_attr.loc,
                        f'attribute "default": expected {type_phrase(type_name)}, '
                        f"found {describe(default)}",
                    )
                default = cast(Value, converted)
        for source, values in (("--set", self.overrides), ("environment", self.environ)):
            if decl.name in values:
                raw = values[decl.name]
                value = convert_text(raw, type_name or "string")
                if value is BAD:
                    assert type_name is not None
                    raise SpecError(
                        decl.block.loc,
                        f"{source} value {json.dumps(raw)} is not {type_phrase(type_name)}",
                    )
                return value
        return REQUIRED if default_attr is None else default

    @staticmethod
    def variable_type(attr: Attribute) -> str:
        expr = attr.expr
        text: str | None = None
        if isinstance(expr, Variable):
            text = expr.name
        elif isinstance(expr, Template) and all(isinstance(p, str) for p in expr.parts):
            text = "".join(str(p) for p in expr.parts)
        elif (
            isinstance(expr, Call)
            and len(expr.args) == 1
            and isinstance(expr.args[0], Variable)
            and not expr.expand_last
        ):
            text = f"{expr.name}({expr.args[0].name})"
        if text not in VARIABLE_TYPES:
            shown = f" {text}" if text else ""
            raise SpecError(
                attr.loc,
                f'attribute "type": unsupported type{shown}; expected one of '
                + ", ".join(VARIABLE_TYPES),
                hint=did_you_mean(text, VARIABLE_TYPES) if text else None,
            )
        assert text is not None
        return text

    def local(self, name: str, loc: Location) -> Value:
        if name in self.local_values:
            return self.local_values[name]
        attr, _ = self.locals[name]
        if name in self.local_stack:
            cycle = [*self.local_stack[self.local_stack.index(name) :], name]
            first, _ = self.locals[cycle[0]]
            raise SpecError(
                first.loc,
                "reference cycle: " + " -> ".join(f"local.{n}" for n in cycle),
                block="locals",
            )
        self.local_stack.append(name)
        try:
            with in_block("locals"):
                value = evaluate(attr.expr, self.scope)
        finally:
            self.local_stack.pop()
        self.local_values[name] = value
        return value

    # ---- attributes

    def checked(self, attr: Attribute, kind: str, scope: Scope, where: str) -> object:
        """Evaluate ``attr`` and check it is of ``kind``; None stays None (unset)."""
        value = evaluate(attr.expr, scope)
        if value is None:
            return None
        try:
            return check_value(kind, value)
        except Mismatch as exc:
            raise SpecError(
                attr.loc,
                f'{where}attribute "{attr.name}": expected {EXPECTED[kind]}, found {exc.found}',
            ) from None

    def attrs(
        self,
        block: Block,
        schema: Mapping[str, str],
        scope: Scope,
        directory: Path,
        where: str = "",
        skip: Sequence[str] = (),
    ) -> dict[str, Val]:
        """Every attribute of ``block`` evaluated and checked against ``schema``;
        null values are left out (null means "not set")."""
        out: dict[str, Val] = {}
        for attr in block.attributes:
            if attr.name not in schema:
                raise SpecError(
                    attr.loc,
                    f'{where}unknown attribute "{attr.name}"',
                    hint=did_you_mean(attr.name, sorted(schema)),
                )
            if attr.name in skip:
                continue
            value = self.checked(attr, schema[attr.name], scope, where)
            if value is not None:
                out[attr.name] = Val(value, attr.loc, directory, block.label())
        return out

    @staticmethod
    def no_blocks(block: Block, allowed: Sequence[str], where: str = "") -> None:
        for nested in block.blocks:
            if nested.type not in allowed:
                if not allowed:
                    raise SpecError(nested.loc, f'{where}unexpected block "{nested.type}"')
                raise SpecError(
                    nested.loc,
                    f'{where}unknown block type "{nested.type}"',
                    hint=did_you_mean(nested.type, allowed),
                )

    @staticmethod
    def required(vals: Mapping[str, Val], name: str, loc: Location, where: str = "") -> Val:
        if name not in vals:
            raise SpecError(loc, f'{where}missing required attribute "{name}"')
        return vals[name]
