"""Evaluating HCL expressions in a scope, with HCL's typed semantics. Pure.

:func:`evaluate_value` computes an expression's typed value (:class:`~pipeline.hcl.cty.V`)
with root names from a scope; :func:`evaluate` gives the same as a plain Python value
for the spec loader. Every error is a one-line :class:`~pipeline.errors.SpecError`
located at the offending sub-expression.

Semantics follow the HCL native syntax spec: ``"${x}"`` is ``x`` itself; operands and
function arguments convert as go-cty converts them (``"2" + 1`` is 3); both arms of a
conditional are evaluated and unified, an error counting only in the arm chosen;
``&&``/``||`` short-circuit on a controlling operand; splats wrap a non-sequence into a
one-element tuple and turn null into an empty tuple; objects and for-expression results
iterate keys in lexical order. ``try(...)`` and ``can(...)`` see their arguments'
errors instead of raising them. Calls to functions marked volatile (``timestamp``,
``uuidv4``) are recorded in the ``trace`` set when one is given.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableSet, Sequence
from dataclasses import dataclass
from fractions import Fraction

from pipeline.errors import Location, SpecError, did_you_mean
from pipeline.hcl import cty
from pipeline.hcl.convert import ConversionError, convert, unify
from pipeline.hcl.cty import BLOCK, BOOL, DYNAMIC, NUMBER, STRING, V
from pipeline.hcl.functions import FUNCTIONS, ArgError, Function, FunctionError, call
from pipeline.hcl.numbers import modulo, round_number
from pipeline.hcl.values import (
    PLACEHOLDER,
    Binary,
    BlockRef,
    Call,
    Conditional,
    Expr,
    ForExpr,
    GetAttr,
    Index,
    Literal,
    Namespace,
    ObjectExpr,
    Scope,
    Splat,
    Template,
    TemplateIf,
    TemplatePart,
    TupleExpr,
    Unary,
    Value,
    Variable,
)


@dataclass(frozen=True)
class _Ctx:
    scope: Mapping[str, object]
    functions: Mapping[str, Function]
    trace: MutableSet[str] | None

    def child(self, names: Mapping[str, V]) -> _Ctx:
        return _Ctx({**self.scope, **names}, self.functions, self.trace)


def evaluate(expr: Expr, scope: Scope) -> Value:
    """The value of ``expr`` as a plain Python value (see :func:`pipeline.hcl.cty.plain`)."""
    result = cty.plain(evaluate_value(expr, scope))
    return result  # type: ignore[return-value]


def evaluate_value(
    expr: Expr,
    scope: Mapping[str, object],
    functions: Mapping[str, Function] | None = None,
    trace: MutableSet[str] | None = None,
) -> V:
    """The typed value of ``expr``. ``scope`` maps root names to values (V or plain) or
    Namespaces; ``functions`` adds to (and may shadow) the standard library. Raises
    SpecError located at the offending sub-expression."""
    table = FUNCTIONS if not functions else {**FUNCTIONS, **functions}
    return _eval(expr, _Ctx(scope, table, trace))


def _eval(expr: Expr, ctx: _Ctx) -> V:
    result = _eval_any(expr, ctx)
    if isinstance(result, Namespace):
        raise SpecError(
            expr.loc, f'"{result.name}" is not a value on its own; write {result.name}.NAME'
        )
    return result


def _eval_any(expr: Expr, ctx: _Ctx) -> V | Namespace:
    if isinstance(expr, Literal):
        return _literal(expr.value)
    if isinstance(expr, Template):
        return _eval_template(expr, ctx)
    if isinstance(expr, Variable):
        if expr.name not in ctx.scope:
            names = sorted(n for n in ctx.scope if n != PLACEHOLDER)
            raise SpecError(
                expr.loc, f'unknown reference "{expr.name}"', hint=did_you_mean(expr.name, names)
            )
        return _scoped(ctx.scope[expr.name])
    if isinstance(expr, GetAttr):
        target = _eval_any(expr.target, ctx)
        if isinstance(target, Namespace):  # a reference: locate it where it starts
            return _scoped(target.attr(expr.name, expr.loc))
        return get_attr(target, expr.name, expr.name_loc)
    if isinstance(expr, Index):
        target = _eval_any(expr.target, ctx)
        key = _eval(expr.key, ctx)
        if isinstance(target, Namespace):
            return _scoped(target.attr(_key_text(key, expr.key.loc), expr.loc))
        return index(target, key, expr.key.loc)
    if isinstance(expr, Splat):
        return _eval_splat(expr, ctx)
    if isinstance(expr, TupleExpr):
        return cty.tuple_of(_eval(i, ctx) for i in expr.items)
    if isinstance(expr, ObjectExpr):
        out: dict[str, V] = {}
        for key_expr, value_expr in expr.items:
            name = _key_text(_eval(key_expr, ctx), key_expr.loc)
            out[name] = _eval(value_expr, ctx)
        return cty.object_of(out)
    if isinstance(expr, Unary):
        value = _eval(expr.operand, ctx)
        if expr.op == "!":
            return cty.boolean(not _bool(value, expr.operand.loc, 'the operand of "!"'))
        return cty.V(NUMBER, -_num(value, expr.operand.loc, 'the operand of "-"'))
    if isinstance(expr, Binary):
        return _eval_binary(expr, ctx)
    if isinstance(expr, Conditional):
        return _eval_conditional(expr, ctx)
    if isinstance(expr, ForExpr):
        return _eval_for(expr, ctx)
    if isinstance(expr, Call):
        return _eval_call(expr, ctx)
    raise SpecError(expr.loc, f"cannot evaluate {type(expr).__name__}")  # pragma: no cover


def _literal(value: object) -> V:
    if value is None:
        return cty.NULL
    if isinstance(value, bool):
        return cty.boolean(value)
    if isinstance(value, str):
        return cty.string(value)
    assert isinstance(value, int | float | Fraction)
    return cty.number(value)


def _scoped(value: object) -> V | Namespace:
    if isinstance(value, Namespace | V):
        return value
    return cty.typed(value)


# --------------------------------------------------------------------------- access


def get_attr(target: V, name: str, loc: Location) -> V:
    """``target.name`` for an object (attribute) or a map (element)."""
    if target.is_null:
        raise SpecError(loc, f'cannot read attribute "{name}" of null')
    if isinstance(target.type, cty.ObjectType | cty.MapType):
        attrs = target.attrs
        if name not in attrs:
            kind = "object" if isinstance(target.type, cty.ObjectType) else "map"
            raise SpecError(
                loc, f'{kind} has no attribute "{name}"', hint=did_you_mean(name, list(attrs))
            )
        return attrs[name]
    raise SpecError(loc, f'cannot read attribute "{name}" of {describe(target)}')


def index(target: V, key: V, loc: Location) -> V:
    """``target[key]`` for a list or tuple (a whole number) or a map or object (a string)."""
    if target.is_null:
        raise SpecError(loc, "cannot index null")
    if key.is_null:
        raise SpecError(loc, "the index must not be null")
    if isinstance(target.type, cty.ObjectType | cty.MapType):
        return get_attr(target, _key_text(key, loc), loc)
    if isinstance(target.type, cty.ListType | cty.TupleType):
        try:
            number = convert(key, NUMBER).number
        except ConversionError:
            raise SpecError(loc, f"the index must be a number, found {describe(key)}") from None
        if number.denominator != 1:
            raise SpecError(loc, f"the index must be a whole number, found {cty.show(key)}")
        i = number.numerator
        items = target.items
        if not 0 <= i < len(items):
            raise SpecError(loc, f"index {i} is out of range for a list of {len(items)} items")
        return items[i]
    if isinstance(target.type, cty.SetType):
        raise SpecError(loc, "cannot index a set; convert it with tolist() first")
    raise SpecError(loc, f"cannot index {describe(target)}")


def _key_text(key: V, loc: Location) -> str:
    if key.is_null:
        raise SpecError(loc, "an object key must not be null")
    try:
        return convert(key, STRING).text
    except ConversionError:
        raise SpecError(loc, f"an object key must be a string, found {describe(key)}") from None


def _eval_splat(expr: Splat, ctx: _Ctx) -> V:
    source = _eval(expr.target, ctx)
    sequence = cty.is_sequence(source.type)
    if source.is_null:
        if sequence:
            raise SpecError(expr.target.loc, "cannot splat a null list")
        return cty.tuple_of(())
    if not sequence:
        source = cty.tuple_of((source,))
    if not expr.ops:
        return source if not isinstance(source.type, cty.SetType) else _set_as_list(source)
    last = expr.ops[-1]
    results = [_eval(last, ctx.child({PLACEHOLDER: item})) for item in source.items]
    if isinstance(source.type, cty.TupleType):
        return cty.tuple_of(results)
    elem_type = source.type.elem  # type: ignore[attr-defined]
    if not results:
        return cty.list_of(_ops_type(elem_type, expr.ops), ())
    first = results[0].type
    if any(r.type != first for r in results[1:]):
        raise SpecError(
            expr.loc,
            "the splat gives elements of different types, which a list cannot hold; "
            "use a for expression instead",
        )
    return cty.list_of(first, results)


def _set_as_list(value: V) -> V:
    return cty.list_of(value.type.elem, value.items)  # type: ignore[attr-defined]


def _ops_type(t: cty.Type, ops: Sequence[GetAttr | Index]) -> cty.Type:
    """The type a splat's attribute/index chain gives for an element of type ``t``."""
    for op in ops:
        if isinstance(t, cty.ObjectType) and isinstance(op, GetAttr):
            t = t.attr_types.get(op.name, DYNAMIC)
        elif isinstance(t, cty.MapType | cty.ListType):
            t = t.elem
        else:
            return DYNAMIC
    return t


# --------------------------------------------------------------------------- operators


def _num(value: V, loc: Location, what: str) -> Fraction:
    if value.is_null:
        raise SpecError(loc, f"{what} must be a number, found null")
    try:
        return convert(value, NUMBER).number
    except ConversionError:
        if value.type == STRING:
            raise SpecError(
                loc, f"{what} must be a number, found the string {cty.show(value)}"
            ) from None
        raise SpecError(loc, f"{what} must be a number, found {describe(value)}") from None


def _bool(value: V, loc: Location, what: str) -> bool:
    if value.is_null:
        raise SpecError(loc, f"{what} must be a bool, found null")
    try:
        return convert(value, BOOL).flag
    except ConversionError:
        raise SpecError(loc, f"{what} must be a bool, found {describe(value)}") from None


def _attempt(expr: Expr, ctx: _Ctx) -> V | SpecError:
    try:
        return _eval(expr, ctx)
    except SpecError as exc:
        return exc


def _eval_binary(expr: Binary, ctx: _Ctx) -> V:
    op = expr.op
    if op in ("&&", "||"):
        return _eval_logic(expr, ctx)
    left_v = _eval(expr.left, ctx)
    right_v = _eval(expr.right, ctx)
    if op == "==":
        return cty.boolean(cty.equals(left_v, right_v))
    if op == "!=":
        return cty.boolean(not cty.equals(left_v, right_v))
    a = _num(left_v, expr.left.loc, f'the left operand of "{op}"')
    b = _num(right_v, expr.right.loc, f'the right operand of "{op}"')
    if op == "<":
        return cty.boolean(a < b)
    if op == ">":
        return cty.boolean(a > b)
    if op == "<=":
        return cty.boolean(a <= b)
    if op == ">=":
        return cty.boolean(a >= b)
    if op == "+":
        return V(NUMBER, round_number(a + b))
    if op == "-":
        return V(NUMBER, round_number(a - b))
    if op == "*":
        return V(NUMBER, round_number(a * b))
    if op == "/":
        if b == 0:
            raise SpecError(expr.right.loc, "division by zero")
        return V(NUMBER, round_number(a / b))
    if op == "%":
        return V(NUMBER, modulo(a, b))
    raise SpecError(expr.loc, f'unknown operator "{op}"')  # pragma: no cover


def _eval_logic(expr: Binary, ctx: _Ctx) -> V:
    op = expr.op
    controlling = op == "||"  # the operand value that decides alone
    sides: list[bool | SpecError] = []
    for side, where in ((expr.left, "left"), (expr.right, "right")):
        got = _attempt(side, ctx)
        if isinstance(got, SpecError):
            sides.append(got)
        else:
            sides.append(_bool(got, side.loc, f'the {where} operand of "{op}"'))
    for value in sides:
        if value is controlling:
            return cty.boolean(controlling)
    for value in sides:
        if isinstance(value, SpecError):
            raise value
    return cty.boolean(not controlling)


def _eval_conditional(expr: Conditional, ctx: _Ctx) -> V:
    cond = _bool(_eval(expr.cond, ctx), expr.cond.loc, "the condition")
    then = _attempt(expr.then, ctx)
    otherwise = _attempt(expr.otherwise, ctx)
    chosen, other = (then, otherwise) if cond else (otherwise, then)
    if isinstance(chosen, SpecError):
        raise chosen
    if isinstance(other, SpecError) or other.type == chosen.type:
        return chosen
    if other == cty.NULL or chosen == cty.NULL:
        result_type = other.type if chosen == cty.NULL else chosen.type
    elif isinstance(chosen.type, cty.Dynamic) or isinstance(other.type, cty.Dynamic):
        return chosen
    else:
        found = unify([then.type, otherwise.type])  # type: ignore[union-attr]
        if found is None:
            raise SpecError(
                expr.then.loc,
                "the true and false results must have consistent types "
                f"({describe(then)} and {describe(otherwise)})",  # type: ignore[arg-type]
            )
        result_type = found
    try:
        return convert(chosen, result_type)
    except ConversionError as exc:
        where = expr.then.loc if cond else expr.otherwise.loc
        raise SpecError(where, f"the conditional result: {exc}") from None


# --------------------------------------------------------------------------- for, templates


def iterate(value: V, loc: Location) -> Iterator[tuple[V, V]]:
    """(key, value) pairs of a collection, in HCL's visit order."""
    if value.is_null:
        raise SpecError(loc, "cannot iterate over null")
    t = value.type
    if isinstance(t, cty.ListType | cty.TupleType):
        for i, item in enumerate(value.items):
            yield cty.number(i), item
    elif isinstance(t, cty.SetType):
        for item in value.items:
            yield item, item
    elif isinstance(t, cty.MapType | cty.ObjectType):
        for k, item in value.attrs.items():
            yield cty.string(k), item
    else:
        raise SpecError(loc, f"cannot iterate over {describe(value)}")


def _eval_for(expr: ForExpr, ctx: _Ctx) -> V:
    collection = _eval(expr.collection, ctx)
    items: list[V] = []
    keyed: dict[str, V] = {}
    groups: dict[str, list[V]] = {}
    for key, value in iterate(collection, expr.collection.loc):
        names = {expr.value_var: value}
        if expr.key_var is not None:
            names[expr.key_var] = key
        inner = ctx.child(names)
        if expr.cond is not None and not _bool(
            _eval(expr.cond, inner), expr.cond.loc, "a for condition"
        ):
            continue
        if expr.key is None:
            items.append(_eval(expr.value, inner))
            continue
        out_key = _key_text(_eval(expr.key, inner), expr.key.loc)
        out_value = _eval(expr.value, inner)
        if expr.group:
            groups.setdefault(out_key, []).append(out_value)
        elif out_key in keyed:
            raise SpecError(
                expr.key.loc,
                f'duplicate key "{out_key}" in a for expression (add "..." to group values)',
            )
        else:
            keyed[out_key] = out_value
    if expr.key is None:
        return cty.tuple_of(items)
    if expr.group:
        return cty.object_of({k: cty.tuple_of(v) for k, v in groups.items()})
    return cty.object_of(keyed)


def interpolate(value: V, loc: Location) -> str:
    """``value`` as template text: strings, numbers and bools convert; others are errors."""
    if value.is_null:
        raise SpecError(loc, "cannot interpolate null into a string")
    if value.type == BLOCK:
        ref = value.data
        assert isinstance(ref, BlockRef)
        raise SpecError(
            loc,
            f"cannot use the block reference {ref.id} inside a string; write {ref.id} on its own",
        )
    try:
        return convert(value, STRING).text
    except ConversionError:
        raise SpecError(loc, f"cannot interpolate {describe(value)} into a string") from None


def _eval_template(expr: Template, ctx: _Ctx) -> V:
    if len(expr.parts) == 1 and isinstance(expr.parts[0], Expr):
        return _eval(expr.parts[0], ctx)  # "${x}" is x itself, as in HCL
    out: list[str] = []
    _render(expr.parts, ctx, out)
    return cty.string("".join(out))


def _render(parts: Sequence[TemplatePart], ctx: _Ctx, out: list[str]) -> None:
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, Expr):
            out.append(interpolate(_eval(part, ctx), part.loc))
        elif isinstance(part, TemplateIf):
            cond = _bool(_eval(part.cond, ctx), part.cond.loc, "the %{if} condition")
            _render(part.then if cond else part.otherwise, ctx, out)
        else:
            for key, value in iterate(_eval(part.collection, ctx), part.collection.loc):
                names = {part.value: value}
                if part.key is not None:
                    names[part.key] = key
                _render(part.body, ctx.child(names), out)


# --------------------------------------------------------------------------- calls


def _eval_call(expr: Call, ctx: _Ctx) -> V:
    fn = ctx.functions.get(expr.name)
    if expr.name in SPECIAL and (fn is None or not fn.user):
        return SPECIAL[expr.name](expr, ctx)
    if fn is None:
        raise SpecError(
            expr.loc,
            f'unknown function "{expr.name}"',
            hint=did_you_mean(expr.name, sorted(ctx.functions)),
        )
    args = [_eval(a, ctx) for a in expr.args]
    if expr.expand_last and args:
        last = args.pop()
        if last.is_null or not cty.is_sequence(last.type):
            raise SpecError(expr.args[-1].loc, f'"..." needs a list, found {describe(last)}')
        args.extend(last.items)
    if fn.volatile and ctx.trace is not None:
        ctx.trace.add(expr.name)
    try:
        return call(fn, args, expr.name)
    except ArgError as exc:
        raise SpecError(expr.loc, f"{expr.name}(): {exc}") from None
    except FunctionError as exc:
        raise SpecError(expr.loc, f"{expr.name}(): {exc}") from None


def _eval_can(expr: Call, ctx: _Ctx) -> V:
    if len(expr.args) != 1 or expr.expand_last:
        raise SpecError(expr.loc, f"can(): expected 1 argument, got {len(expr.args)}")
    return cty.boolean(not isinstance(_attempt(expr.args[0], ctx), SpecError))


def _eval_convert(expr: Call, ctx: _Ctx) -> V:
    """``convert(value, TYPE)``: the type is a type expression, not a value."""
    from pipeline.hcl.typeexpr import type_of_expr

    if len(expr.args) != 2 or expr.expand_last:
        raise SpecError(expr.loc, f"convert(): expected 2 arguments, got {len(expr.args)}")
    value = _eval(expr.args[0], ctx)
    want = type_of_expr(expr.args[1])
    try:
        return convert(value, want)
    except ConversionError as exc:
        raise SpecError(expr.args[0].loc, f"convert(): {exc}") from None


def _eval_try(expr: Call, ctx: _Ctx) -> V:
    if not expr.args:
        raise SpecError(expr.loc, "try(): expected at least 1 argument, got 0")
    errors: list[SpecError] = []
    for arg in expr.args:
        got = _attempt(arg, ctx)
        if not isinstance(got, SpecError):
            return got
        errors.append(got)
    raise SpecError(
        expr.loc, f"try(): no argument could be evaluated; the first failed with: {errors[0]}"
    )


SPECIAL = {"try": _eval_try, "can": _eval_can, "convert": _eval_convert}


def describe(value: V) -> str:
    """A value's kind for messages; tuples read as lists, as their ``[...]`` syntax does."""
    if isinstance(value.type, cty.TupleType) and not value.is_null:
        return "a list"
    if value.type == BLOCK and isinstance(value.data, BlockRef):
        return f"a block reference ({value.data.id})"
    return cty.describe(value)
