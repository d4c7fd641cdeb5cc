"""A runner for HashiCorp's HCL specification test format, over our own parser.

A case is ``NAME.t`` (the expectation) beside ``NAME.hcl`` and/or ``NAME.hcl.json``
(the inputs) and, optionally, ``NAME.hcldec`` (how to decode the input; without it
the body's attributes are decoded as an object, as an ``object`` spec of ``attr``s of
type ``any`` would). The ``.t`` file holds either ``result`` (a value, converted to
``result_type`` when given, and compared with cty's RawEquals: same type, same
value) or a ``diagnostics`` block of ``error``/``warning`` blocks with ``from``
positions (``line``, ``column``, ``byte``).

Differences from HashiCorp's runner, because of what our parser reports: an input
stops at its first error, so a case expects exactly one error; only the start of its
range (``from``) is compared, line, column and byte; ``traversals`` blocks are not
supported. The hcldec specs understood are ``object``, ``attr``, ``block``,
``block_list``, ``block_set``, ``block_map``, ``literal`` and ``default``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import SpecError
from pipeline.hcl import cty
from pipeline.hcl.convert import ConversionError, convert, unify
from pipeline.hcl.cty import DYNAMIC, Type, V
from pipeline.hcl.evaluator import evaluate_value
from pipeline.hcl.files import parse
from pipeline.hcl.jsonsyntax import BlockSchema, parse_json
from pipeline.hcl.typeexpr import type_of_expr
from pipeline.hcl.values import Attribute, Block, Expr, File


@dataclass(frozen=True)
class Spec:
    kind: str  # object, attr, block, block_list, block_set, block_map, literal, default
    name: str = ""
    type: Type = DYNAMIC
    required: bool = False
    labels: tuple[str, ...] = ()
    children: tuple[Spec, ...] = ()
    value: Expr | None = None


def _attr(block: Block, name: str) -> Attribute | None:
    return next((a for a in block.attributes if a.name == name), None)


def read_spec(block: Block) -> Spec:
    kind = block.type
    label = block.labels[0] if block.labels else ""
    nested = tuple(read_spec(b) for b in block.blocks)
    if kind == "object":
        return Spec("object", children=nested)
    if kind == "attr":
        name_attr, type_attr, req = (
            _attr(block, "name"),
            _attr(block, "type"),
            _attr(block, "required"),
        )
        name = label
        if name_attr is not None:
            name = cty.plain(evaluate_value(name_attr.expr, {}))  # type: ignore[assignment]
        required = bool(req and cty.plain(evaluate_value(req.expr, {})))
        t = type_of_expr(type_attr.expr) if type_attr else DYNAMIC
        return Spec("attr", str(name), t, required)
    if kind in ("block", "block_list", "block_set", "block_map"):
        type_attr = _attr(block, "block_type")
        if type_attr is not None:
            label = str(cty.plain(evaluate_value(type_attr.expr, {})))
        labels_attr = _attr(block, "labels")
        labels: tuple[str, ...] = ()
        if labels_attr is not None:
            labels = tuple(cty.plain(evaluate_value(labels_attr.expr, {})))  # type: ignore[arg-type]
        return Spec(kind, label, labels=labels, children=nested)
    if kind == "literal":
        value = _attr(block, "value")
        return Spec("literal", value=value.expr if value else None)
    if kind == "default":
        return Spec("default", children=nested)
    raise ValueError(f"{block.loc}: unsupported hcldec spec {kind!r}")


def _schema(spec: Spec) -> dict[str, BlockSchema]:
    out: dict[str, BlockSchema] = {}
    for child in spec.children:
        if child.kind.startswith("block"):
            inner: dict[str, BlockSchema] = {}
            for c in child.children:
                inner |= _schema(c)
            out[child.name] = BlockSchema(len(child.labels), inner)
        elif child.kind in ("object", "default"):
            out |= _schema(child)
    return out


def implied_type(spec: Spec) -> Type:
    if spec.kind == "object":
        return cty.ObjectType.of({c.name or c.kind: implied_type(c) for c in spec.children})
    if spec.kind == "attr":
        return spec.type
    inner = implied_type(spec.children[0]) if spec.children else DYNAMIC
    if spec.kind == "block":
        return inner
    if spec.kind == "block_list":
        return cty.ListType(inner)
    if spec.kind == "block_set":
        return cty.SetType(inner)
    if spec.kind == "block_map":
        return cty.MapType(inner)
    if spec.kind == "default":
        return implied_type(spec.children[0])
    return DYNAMIC


def _wanted(spec: Spec) -> tuple[set[str], set[str]]:
    """(attribute names, block types) a spec reads from a body."""
    if spec.kind == "attr":
        return {spec.name}, set()
    if spec.kind.startswith("block"):
        return set(), {spec.name}
    attrs: set[str] = set()
    blocks: set[str] = set()
    for c in spec.children:
        a, b = _wanted(c)
        attrs |= a
        blocks |= b
    return attrs, blocks


def check_body(body: tuple[Attribute | Block, ...], spec: Spec) -> None:
    """Like hcl's Body.Content: anything the spec does not read is an error."""
    attrs, blocks = _wanted(spec)
    for item in body:
        if isinstance(item, Attribute) and item.name not in attrs:
            raise SpecError(item.loc, f'an argument named "{item.name}" is not expected here')
        if isinstance(item, Block) and item.type not in blocks:
            raise SpecError(item.loc, f'blocks of type "{item.type}" are not expected here')


SCOPE: dict[str, V] = {}


def decode(body: tuple[Attribute | Block, ...], spec: Spec, where: str) -> V:
    attrs = {i.name: i for i in body if isinstance(i, Attribute)}
    blocks = [i for i in body if isinstance(i, Block)]
    if spec.kind == "object":
        return cty.object_of({c.name or c.kind: decode(body, c, where) for c in spec.children})
    if spec.kind == "attr":
        found = attrs.get(spec.name)
        if found is None:
            if spec.required:
                raise SpecError(None, f'{where}: missing required attribute "{spec.name}"')
            return cty.null(spec.type)
        value = evaluate_value(found.expr, SCOPE)
        try:
            return convert(value, spec.type)
        except ConversionError as exc:
            raise SpecError(found.expr.loc, f'attribute "{spec.name}": {exc}') from None
    if spec.kind == "literal":
        assert spec.value is not None
        return evaluate_value(spec.value, SCOPE)
    if spec.kind == "default":
        for child in spec.children:
            got = decode(body, child, where)
            if not got.is_null:
                return got
        return cty.null(implied_type(spec))
    inner = spec.children[0] if spec.children else Spec("object")
    mine = [b for b in blocks if b.type == spec.name]
    for b in mine:
        if len(b.labels) != len(spec.labels):
            raise SpecError(b.loc, f'block "{b.type}" takes {len(spec.labels)} labels')
    for b in mine:
        check_body(b.body, inner)
    values = [decode(b.body, inner, b.label()) for b in mine]
    if spec.kind == "block":
        if len(mine) > 1:
            raise SpecError(mine[1].loc, f'duplicate "{spec.name}" block')
        return values[0] if values else cty.null(implied_type(inner))
    if spec.kind == "block_map":
        keyed = {b.labels[0]: v for b, v in zip(mine, values, strict=True)}
        elem = unify([v.type for v in values]) if values else implied_type(inner)
        return cty.map_of(
            elem or DYNAMIC, {k: convert(v, elem or DYNAMIC) for k, v in keyed.items()}
        )
    elem = unify([v.type for v in values]) if values else implied_type(inner)
    items = [convert(v, elem or DYNAMIC) for v in values]
    if spec.kind == "block_set":
        return cty.set_of(elem or DYNAMIC, items)
    return cty.list_of(elem or DYNAMIC, items)


@dataclass(frozen=True)
class Expectation:
    result: V | None
    result_type: Type
    errors: tuple[tuple[int, int, int], ...]  # (line, column, byte) of each "from"
    traversals: tuple[str, ...] | None = None  # "root.attr[...]" texts, when checked


def read_expectation(path: Path) -> Expectation:
    f = parse(path.read_text(encoding="utf-8"), str(path))
    result: V | None = None
    result_type: Type = DYNAMIC
    errors: list[tuple[int, int, int]] = []
    trav: tuple[str, ...] | None = None
    for item in f.body:
        if isinstance(item, Attribute) and item.name == "result_type":
            result_type = type_of_expr(item.expr)
        elif isinstance(item, Attribute) and item.name == "result":
            result = evaluate_value(item.expr, {})
        elif isinstance(item, Block) and item.type == "diagnostics":
            for diag in item.blocks:
                start = next(b for b in diag.blocks if b.type == "from")
                pos = {a.name: cty.plain(evaluate_value(a.expr, {})) for a in start.attributes}
                errors.append((int(pos["line"]), int(pos["column"]), int(pos.get("byte", -1))))  # type: ignore[arg-type]
        elif isinstance(item, Block) and item.type == "traversals":
            refs = []
            for expect_block in item.blocks:
                ref = next(a for a in expect_block.attributes if a.name == "ref")
                refs.append(traversal_text(ref.expr))
            trav = tuple(refs)
    if result is not None:
        result = convert(result, result_type)
    return Expectation(result, result_type, tuple(errors), trav)


def traversal_text(expr: Expr) -> str:
    """``a.b[0]`` for a traversal expression (a root variable and attribute/index steps)."""
    from pipeline.hcl.values import GetAttr, Index, Literal, Variable

    if isinstance(expr, Variable):
        return expr.name
    if isinstance(expr, GetAttr):
        return f"{traversal_text(expr.target)}.{expr.name}"
    if isinstance(expr, Index) and isinstance(expr.key, Literal):
        return f"{traversal_text(expr.target)}[{expr.key.value!r}]"
    raise ValueError(f"{expr.loc}: not a traversal")


def traversals(body: tuple[Attribute | Block, ...]) -> list[str]:
    """The root references the body's expressions make (hcldec --var-refs)."""
    from pipeline.hcl import values as hv

    found: list[str] = []

    def walk(node: object, bound: frozenset[str]) -> None:
        if isinstance(node, hv.Variable | hv.GetAttr | hv.Index):
            try:
                text = traversal_text(node)
            except ValueError:
                text = ""
            root = text.split(".", 1)[0].split("[", 1)[0]
            if text and root not in bound and root != hv.PLACEHOLDER:
                found.append(text)
                return
        if isinstance(node, hv.ForExpr):
            inner = bound | {node.value_var, *([node.key_var] if node.key_var else [])}
            walk(node.collection, bound)
            for part in (node.key, node.value, node.cond):
                walk(part, inner)
            return
        if isinstance(node, hv.TemplateFor):
            walk(node.collection, bound)
            walk(node.body, bound | {node.value, *([node.key] if node.key else [])})
            return
        if isinstance(node, tuple | list):
            for item in node:
                walk(item, bound)
            return
        if hasattr(node, "__dataclass_fields__"):
            for name in node.__dataclass_fields__:
                if name not in ("loc", "name_loc"):
                    walk(getattr(node, name), bound)

    for item in body:
        if isinstance(item, Attribute):
            walk(item.expr, frozenset())
        else:
            found.extend(traversals(item.body))
    return found


def conforms(got: Type, want: Type) -> bool:
    if isinstance(want, cty.Dynamic):
        return True
    if type(got) is not type(want):
        return False
    if isinstance(want, cty.ListType | cty.SetType | cty.MapType):
        return conforms(got.elem, want.elem)  # type: ignore[attr-defined]
    if isinstance(want, cty.TupleType):
        return len(got.elems) == len(want.elems) and all(  # type: ignore[attr-defined]
            conforms(a, b)
            for a, b in zip(got.elems, want.elems, strict=True)  # type: ignore[attr-defined]
        )
    if isinstance(want, cty.ObjectType):
        have = got.attr_types  # type: ignore[attr-defined]
        return have.keys() == want.attr_types.keys() and all(
            conforms(have[k], t) for k, t in want.attrs
        )
    return got == want


def _byte(text: str, line: int, col: int) -> int:
    lines = text.split("\n")
    offset = sum(len(ln.encode()) + 1 for ln in lines[: line - 1])
    return offset + len(lines[line - 1][: col - 1].encode()) if line <= len(lines) else offset


def run_input(
    input_path: Path, spec: Spec | None, expect: Expectation, json_schema: Mapping[str, BlockSchema]
) -> list[str]:
    text = input_path.read_text(encoding="utf-8")
    the_spec = spec or Spec("object")
    error: SpecError | None = None
    value: V | None = None
    try:
        if input_path.name.endswith(".json"):
            f: File = parse_json(text, str(input_path), json_schema)
        else:
            f = parse(text, str(input_path))
        if spec is None:
            attrs = tuple(i for i in f.body if isinstance(i, Attribute))
            the_spec = Spec("object", children=tuple(Spec("attr", a.name) for a in attrs))
        check_body(f.body, the_spec)
        value = decode(f.body, the_spec, str(input_path))
        if expect.traversals is not None:
            got_refs = sorted(traversals(f.body))
            if got_refs != sorted(expect.traversals):
                return [f"{input_path.name}: references {got_refs}, expected {expect.traversals}"]
    except SpecError as exc:
        error = exc
    problems: list[str] = []
    name = input_path.name
    if expect.errors:
        if error is None:
            return [f"{name}: expected an error at {expect.errors[0][:2]}, got {value!r}"]
        if len(expect.errors) != 1:
            return [f"{name}: expects {len(expect.errors)} errors; this runner reports one"]
        line, col, byte = expect.errors[0]
        loc = error.loc
        got = (loc.line, loc.col, _byte(text, loc.line, loc.col)) if loc else (0, 0, 0)
        if got[:2] != (line, col) or (byte >= 0 and got[2] != byte):
            problems.append(f"{name}: error at {got}, expected {(line, col, byte)}: {error}")
        return problems
    if error is not None:
        return [f"{name}: unexpected error: {error}"]
    assert value is not None
    if not conforms(value.type, expect.result_type):
        problems.append(f"{name}: result type {value.type}, expected {expect.result_type}")
    if expect.result is not None and value != expect.result:
        problems.append(f"{name}: result {value!r}, expected {expect.result!r}")
    return problems


def run_case(t_path: Path) -> list[str]:
    """Problems with one case (empty when it passes)."""
    base = t_path.with_suffix("")
    expect = read_expectation(t_path)
    spec_path = base.with_suffix(".hcldec")
    spec: Spec | None = None
    SCOPE.clear()
    if spec_path.exists():
        spec_file = parse(spec_path.read_text(encoding="utf-8"), str(spec_path))
        for b in spec_file.body:
            if isinstance(b, Block) and b.type == "variables":
                SCOPE.update({a.name: evaluate_value(a.expr, {}) for a in b.attributes})
        roots = [
            read_spec(b) for b in spec_file.body if isinstance(b, Block) and b.type != "variables"
        ]
        spec = roots[0] if len(roots) == 1 else Spec("object", children=tuple(roots))
    inputs = [p for p in (base.with_suffix(".hcl"), Path(str(base) + ".hcl.json")) if p.exists()]
    if not inputs:
        return [f"{t_path}: no .hcl or .hcl.json input"]
    schema = _schema(Spec("object", children=(spec,))) if spec else {}
    problems: list[str] = []
    for input_path in inputs:
        problems.extend(run_input(input_path, spec, expect, schema))
    return problems


def cases(root: Path) -> list[Path]:
    return sorted(root.rglob("*.t"))
