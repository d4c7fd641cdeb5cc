"""Evaluating bake files: variables, user functions, top-level values, ``target`` and
``group`` blocks (with ``matrix``), as buildx's ``hclparser`` does. Pure apart from
the environment mapping it is given.

Names are bare: ``${TAG}`` is the variable (or top-level attribute) TAG, a matrix key
is a bare name in its target, ``target.NAME.ATTR`` and ``group.NAME.targets`` read
another block's own attributes (an attribute no block of that name sets is null).
Everything is evaluated on first use, with cycles reported.

A variable's value: a built-in (``BAKE_CMD_CONTEXT``, ``BAKE_LOCAL_PLATFORM``) is a
string; otherwise ``--var NAME=VALUE``, then the environment ``NAME`` (or
``NAME_JSON``, as JSON, for a typed variable or when ``NAME`` is unset and no variable
``NAME_JSON`` exists), then its default (which may use other variables and
functions), else ``""`` (null when typed). Overrides convert to the variable's type:
bools as Go's ``ParseBool``, numbers as ``ParseFloat``, lists/sets/tuples from CSV,
maps from ``k:v`` CSV; an untyped variable takes the type of its default. Then every
``validation`` block's condition must hold.
"""

from __future__ import annotations

import itertools
import re
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import Location, SpecError, did_you_mean
from pipeline.hcl import cty
from pipeline.hcl.convert import ConversionError, convert
from pipeline.hcl.cty import DYNAMIC, V
from pipeline.hcl.evaluator import evaluate_value
from pipeline.hcl.functions import Function, FunctionError, Param
from pipeline.hcl.typeexpr import type_of_expr
from pipeline.hcl.values import Attribute, Block, Expr, File, Namespace, TupleExpr, Variable
from pipeline.spec.bakevars import override_value

BAKE_BLOCKS = ("variable", "function", "target", "group")
NATIVE_BLOCKS = ("app", "image", "locals")
TARGET_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")


@dataclass
class EvalBlock:
    """One evaluated ``target``/``group`` block (one per matrix combination)."""

    kind: str
    name: str
    origin: str  # the block's label (a matrix renames it)
    block: Block
    directory: Path
    scope: Mapping[str, object]  # matrix names on top of the global scope
    attrs: dict[str, V] = field(default_factory=dict)
    volatile: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f'{self.kind} "{self.name}"'

    def loc(self, name: str) -> Location:
        attr = next((a for a in self.block.attributes if a.name == name), None)
        return attr.loc if attr else self.block.loc


@dataclass
class Evaluated:
    variables: dict[str, V]
    targets: list[EvalBlock]
    groups: list[EvalBlock]
    renamed: dict[str, list[str]]  # a matrix block's label -> the targets it made
    native: list[tuple[Block, Path]]
    descriptions: dict[str, str]  # variable -> description


class _Scope(Mapping[str, object]):
    """The global scope: values are resolved on first access."""

    def __init__(self, owner: BakeEvaluator) -> None:
        self.owner = owner

    def __getitem__(self, name: str) -> object:
        return self.owner.value(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.owner.has(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.owner.names())

    def __len__(self) -> int:
        return len(self.owner.names())


class BakeEvaluator:
    def __init__(
        self,
        files: Sequence[tuple[File, Path]],
        environ: Mapping[str, str],
        cli_vars: Mapping[str, str],
        builtins: Mapping[str, str],
    ) -> None:
        self.files = files
        self.environ = environ
        self.cli_vars = cli_vars
        self.builtins = dict(builtins)
        self.variables: dict[str, tuple[Block, Path]] = {}
        self.attrs: dict[str, tuple[Attribute, Path]] = {}
        self.func_blocks: dict[str, Block] = {}
        self.values: dict[str, V] = {}
        self.value_volatile: dict[str, frozenset[str]] = {}
        self.active: list[str] = []
        self.functions: dict[str, Function] = {}
        self.calling: list[str] = []
        self.trace: set[str] = set()
        self.target_blocks: list[tuple[Block, Path]] = []
        self.group_blocks: list[tuple[Block, Path]] = []
        self.native: list[tuple[Block, Path]] = []
        self.instances: dict[str, list[EvalBlock]] = {}
        self.group_instances: dict[str, list[EvalBlock]] = {}
        self.evaluating: list[tuple[int, str]] = []
        self.scope = _Scope(self)

    # ---- collecting

    def collect(self) -> None:
        for file, directory in self.files:
            for item in file.body:
                if isinstance(item, Attribute):
                    self.attrs[item.name] = (item, directory)  # a later file wins
                    continue
                kind = item.type
                if kind in NATIVE_BLOCKS:
                    self.native.append((item, directory))
                    continue
                if kind not in BAKE_BLOCKS:
                    raise SpecError(
                        item.loc,
                        f'unknown block type "{kind}"',
                        hint=did_you_mean(kind, (*BAKE_BLOCKS, *NATIVE_BLOCKS)),
                    )
                if len(item.labels) != 1:
                    raise SpecError(
                        item.loc, f'{kind} blocks take exactly one name: {kind} "NAME" {{ ... }}'
                    )
                name = item.labels[0]
                if kind in ("target", "group") and not TARGET_NAME.match(name):
                    raise SpecError(
                        item.loc,
                        f'invalid {kind} name "{name}": only letters, digits, "_" and "-"',
                    )
                if kind == "variable":
                    if name in ("target", "group", "function"):
                        raise SpecError(item.loc, f'"{name}" is reserved; rename the variable')
                    self.variables[name] = (item, directory)
                elif kind == "function":
                    self.func_blocks[name] = item
                elif kind == "target":
                    self.target_blocks.append((item, directory))
                else:
                    self.group_blocks.append((item, directory))
        for name in self.cli_vars:
            if name not in self.variables and name not in self.builtins:
                raise SpecError(
                    None,
                    f"--var {name}: no variable {name!r} is declared in the bake files",
                    hint=did_you_mean(name, sorted(self.variables)),
                )

    # ---- the global scope

    def names(self) -> list[str]:
        roots = {"target", "group", *self.native_kinds()}
        return sorted({*self.builtins, *self.variables, *self.attrs, *roots})

    def native_kinds(self) -> dict[str, list[str]]:
        """``app``/``image`` -> the names of the spec blocks of that kind."""
        out: dict[str, list[str]] = {}
        for block, _ in self.native:
            if block.type in ("app", "image") and block.labels:
                out.setdefault(block.type, []).append(block.labels[0])
        return out

    def has(self, name: str) -> bool:
        known = name in self.builtins or name in self.variables or name in self.attrs
        return known or name in ("target", "group") or name in self.native_kinds()

    def value(self, name: str) -> object:
        kinds = self.native_kinds()
        if name in kinds and name not in self.variables and name not in self.attrs:
            return Namespace.blocks(name, kinds[name])
        if name == "target":
            return Namespace("target", list(self.instances), self.block_ref("target"))
        if name == "group":
            return Namespace("group", list(self.group_instances), self.block_ref("group"))
        if name not in self.values:
            self.resolve(name)
        self.trace |= self.value_volatile.get(name, frozenset())
        return self.values[name]

    def resolve(self, name: str) -> None:
        if name in self.active:
            cycle = [*self.active[self.active.index(name) :], name]
            raise SpecError(self.where(cycle[0]), "variable cycle: " + " -> ".join(cycle))
        self.active.append(name)
        outer, self.trace = self.trace, set()
        try:
            self.values[name] = self.compute(name)
            self.value_volatile[name] = frozenset(self.trace)
        finally:
            self.active.pop()
            self.trace = outer | self.trace

    def where(self, name: str) -> Location | None:
        if name in self.attrs:
            return self.attrs[name][0].loc
        if name in self.variables:
            return self.variables[name][0].loc
        return None

    def evaluate(self, expr: Expr, scope: Mapping[str, object] | None = None) -> V:
        return evaluate_value(
            expr, self.scope if scope is None else scope, self.functions, self.trace
        )

    def compute(self, name: str) -> V:
        if name in self.builtins:
            return cty.string(self.builtins[name])
        if name in self.attrs:
            return self.evaluate(self.attrs[name][0].expr)
        block, _ = self.variables[name]
        label = f'variable "{name}"'
        attrs = {a.name: a for a in block.attributes}
        for attr in block.attributes:
            if attr.name not in ("default", "type", "description"):
                raise SpecError(
                    attr.loc,
                    f'{label}: unknown attribute "{attr.name}"',
                    hint=did_you_mean(attr.name, ("default", "type", "description")),
                )
        for nested in block.blocks:
            if nested.type != "validation":
                raise SpecError(nested.loc, f'{label}: unexpected block "{nested.type}"')
        typed = "type" in attrs
        want = type_of_expr(attrs["type"].expr) if typed else DYNAMIC
        value: V | None = None
        if "default" in attrs:
            got = self.evaluate(attrs["default"].expr)
            try:
                value = convert(got, want)
            except ConversionError as exc:
                raise SpecError(
                    attrs["default"].expr.loc,
                    f"{label}: the default is not a {cty.type_string(want)}: {exc}",
                ) from None
        raw, is_json = self.override(name, typed)
        if raw is None:
            if value is not None:
                return value
            return cty.null(want) if typed else cty.string("")
        try:
            return override_value(raw, is_json, want if typed else None, value)
        except ValueError as exc:
            source = f"{name}_JSON" if is_json else name
            raise SpecError(block.loc, f"{label}: the value of {source} {exc}") from None

    def override(self, name: str, favor_json: bool) -> tuple[str | None, bool]:
        if name in self.cli_vars:
            return self.cli_vars[name], False
        raw = self.environ.get(name)
        if raw is None or favor_json:
            json_name = name + "_JSON"
            declared = json_name in self.variables or json_name in self.builtins
            if not declared and json_name in self.environ:
                return self.environ[json_name], True
        return raw, False

    def validate(self) -> None:
        for name, (block, _) in self.variables.items():
            for rule in block.blocks:
                attrs = {a.name: a for a in rule.attributes}
                if "condition" not in attrs:
                    raise SpecError(rule.loc, f'variable "{name}": validation needs a condition')
                cond = self.evaluate(attrs["condition"].expr)
                if cond.is_null:
                    raise SpecError(
                        attrs["condition"].expr.loc,
                        f'variable "{name}": the condition is null; it must be true or false',
                    )
                try:
                    ok = convert(cond, cty.BOOL).flag
                except ConversionError:
                    raise SpecError(
                        attrs["condition"].expr.loc,
                        f'variable "{name}": the condition must be a bool',
                    ) from None
                if not ok:
                    message = "this check failed, but has no error_message"
                    if "error_message" in attrs:
                        got = self.evaluate(attrs["error_message"].expr)
                        message = cty.plain(got) if got.type == cty.STRING else message  # type: ignore[assignment]
                    raise SpecError(attrs["condition"].expr.loc, f'variable "{name}": {message}')

    # ---- user functions

    def define_functions(self) -> None:
        for name, block in self.func_blocks.items():
            self.functions[name] = self.user_function(name, block)

    def user_function(self, name: str, block: Block) -> Function:
        attrs = {a.name: a for a in block.attributes}
        label = f'function "{name}"'
        for attr in block.attributes:
            if attr.name not in ("params", "variadic_params", "result"):
                raise SpecError(attr.loc, f'{label}: unknown attribute "{attr.name}"')
        if "params" not in attrs:
            raise SpecError(block.loc, f'{label}: missing required attribute "params"')
        if "result" not in attrs:
            raise SpecError(block.loc, f'{label}: missing required attribute "result"')
        params_expr = attrs["params"].expr
        if not isinstance(params_expr, TupleExpr):
            raise SpecError(params_expr.loc, f"{label}: params must be a list of names")
        params: list[str] = []
        for item in params_expr.items:
            if not isinstance(item, Variable):
                raise SpecError(item.loc, f"{label}: each parameter must be a bare name")
            params.append(item.name)
        variadic: str | None = None
        if "variadic_params" in attrs:
            expr = attrs["variadic_params"].expr
            if not isinstance(expr, Variable):
                raise SpecError(expr.loc, f"{label}: variadic_params must be a bare name")
            variadic = expr.name
        result = attrs["result"].expr

        def impl(*args: V) -> V:
            if name in self.calling:
                raise FunctionError(f"function cycle: {' -> '.join([*self.calling, name])}")
            names: dict[str, object] = dict(zip(params, args, strict=False))
            if variadic is not None:
                names[variadic] = cty.tuple_of(args[len(params) :])
            self.calling.append(name)
            try:
                return self.evaluate(result, ChainMap(names, self.scope))  # type: ignore[arg-type]
            except SpecError as exc:
                raise FunctionError(str(exc)) from None
            finally:
                self.calling.pop()

        return Function(
            tuple(Param(p) for p in params),
            impl,
            Param(variadic) if variadic is not None else None,
            user=True,
        )

    # ---- targets and groups

    def expand(self) -> dict[str, list[str]]:
        """Make the EvalBlocks (one per matrix combination); return the renames."""
        renamed: dict[str, list[str]] = {}
        for kind, blocks, table in (
            ("target", self.target_blocks, self.instances),
            ("group", self.group_blocks, self.group_instances),
        ):
            for block, directory in blocks:
                made = self.instances_of(kind, block, directory)
                names = [m.name for m in made]
                if len(set(names)) != len(names):
                    dup = next(n for n in names if names.count(n) > 1)
                    raise SpecError(
                        block.loc,
                        f'{kind} "{block.labels[0]}": the matrix makes the name "{dup}" twice; '
                        'set "name" from every matrix key',
                    )
                for m in made:
                    table.setdefault(m.name, []).append(m)
                origin = block.labels[0]
                if names != [origin]:
                    renamed.setdefault(origin, []).extend(
                        n for n in names if n not in renamed.get(origin, [])
                    )
        return renamed

    def instances_of(self, kind: str, block: Block, directory: Path) -> list[EvalBlock]:
        attrs = {a.name: a for a in block.attributes}
        origin = block.labels[0]
        if kind == "group":
            for key in ("matrix", "name"):
                if key in attrs:
                    raise SpecError(
                        attrs[key].loc, f'group "{origin}": {key} is not supported for groups'
                    )
            return [EvalBlock(kind, origin, origin, block, directory, self.scope)]
        if "matrix" not in attrs:
            if "name" in attrs:
                raise SpecError(attrs["name"].loc, f'target "{origin}": "name" requires "matrix"')
            return [EvalBlock(kind, origin, origin, block, directory, self.scope)]
        matrix = self.evaluate(attrs["matrix"].expr)
        if not isinstance(matrix.type, cty.ObjectType | cty.MapType) or matrix.is_null:
            raise SpecError(attrs["matrix"].expr.loc, f'target "{origin}": matrix must be a map')
        axes: list[tuple[str, tuple[V, ...]]] = []
        for key, values in matrix.attrs.items():
            if values.is_null or not cty.is_sequence(values.type):
                raise SpecError(
                    attrs["matrix"].expr.loc, f'target "{origin}": matrix values must be lists'
                )
            axes.append((key, values.items))
        out = []
        for combo in itertools.product(*(vals for _, vals in axes)):
            names = dict(zip((k for k, _ in axes), combo, strict=True))
            scope: Mapping[str, object] = ChainMap(names, self.scope)  # type: ignore[arg-type]
            name = origin
            if "name" in attrs:
                got = self.evaluate(attrs["name"].expr, scope)
                try:
                    name = convert(got, cty.STRING).text
                except ConversionError:
                    raise SpecError(
                        attrs["name"].expr.loc, f'target "{origin}": name must be a string'
                    ) from None
                if not TARGET_NAME.match(name):
                    raise SpecError(
                        attrs["name"].expr.loc,
                        f'target "{origin}": invalid name "{name}": '
                        'only letters, digits, "_" and "-"',
                    )
            out.append(EvalBlock(kind, name, origin, block, directory, scope))
        return out

    def attr(self, inst: EvalBlock, name: str) -> V:
        """One attribute of one block, evaluated once (cycles reported)."""
        if name in inst.attrs:
            self.trace |= inst.volatile.get(name, frozenset())
            return inst.attrs[name]
        key = (id(inst), name)
        if key in self.evaluating:
            raise SpecError(inst.loc(name), f"reference cycle: {inst.kind}.{inst.name}.{name}")
        found = next((a for a in inst.block.attributes if a.name == name), None)
        if found is None:
            return cty.NULL
        self.evaluating.append(key)
        outer, self.trace = self.trace, set()
        try:
            value = self.evaluate(found.expr, inst.scope)
            inst.attrs[name] = value
            inst.volatile[name] = frozenset(self.trace)
        finally:
            self.evaluating.pop()
            self.trace = outer | self.trace
        return value

    def block_ref(self, kind: str) -> Callable[[str, Location], object]:
        table = self.instances if kind == "target" else self.group_instances

        def resolve(name: str, loc: Location) -> object:
            insts = table[name]

            def attr_value(attr: str, _loc: Location) -> V:
                for inst in reversed(insts):
                    if any(a.name == attr for a in inst.block.attributes):
                        return self.attr(inst, attr)
                return cty.NULL

            return Namespace(f"{kind}.{name}", _known_attrs(kind, insts), attr_value)

        return resolve

    def run(self) -> Evaluated:
        self.collect()
        self.define_functions()
        for name in self.variables:
            self.value(name)
        self.validate()
        for name in self.attrs:
            self.value(name)
        renamed = self.expand()
        for table in (self.instances, self.group_instances):
            for insts in table.values():
                for inst in insts:
                    for attr in inst.block.attributes:
                        if attr.name not in ("matrix", "name"):
                            self.attr(inst, attr.name)
        descriptions = {}
        for name, (block, _) in self.variables.items():
            desc = next((a for a in block.attributes if a.name == "description"), None)
            if desc is not None:
                descriptions[name] = str(cty.plain(self.evaluate(desc.expr, {})))
        return Evaluated(
            variables={n: self.values[n] for n in self.variables},
            targets=[i for insts in self.instances.values() for i in insts],
            groups=[i for insts in self.group_instances.values() for i in insts],
            renamed=renamed,
            native=self.native,
            descriptions=descriptions,
        )


def _known_attrs(kind: str, insts: list[EvalBlock]) -> list[str]:
    from pipeline.spec.baketarget import GROUP_FIELDS, TARGET_FIELDS

    names = set(TARGET_FIELDS if kind == "target" else GROUP_FIELDS)
    for inst in insts:
        names |= {a.name for a in inst.block.attributes}
    return sorted(names)
