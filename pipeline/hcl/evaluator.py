"""Evaluating HCL expressions in a scope. Pure.

:func:`evaluate` computes an expression's value with root names from a scope; every
error is a one-line :class:`~pipeline.errors.SpecError` located at the offending
sub-expression. Function calls go to :data:`pipeline.hcl.functions.FUNCTIONS`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence

from pipeline.errors import Location, SpecError, did_you_mean
from pipeline.hcl.functions import FUNCTIONS, FunctionError
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
    describe,
    equal,
    format_number,
    integral,
    parse_number,
    to_string,
)

# --------------------------------------------------------------------------- evaluation


def evaluate(expr: Expr, scope: Scope) -> Value:
    """The value of ``expr`` with root names from ``scope``. Raises SpecError located
    at the offending sub-expression. Pure."""
    value = _eval(expr, scope)
    return value


def _eval(expr: Expr, scope: Scope) -> Value:
    result = _eval_any(expr, scope)
    if isinstance(result, Namespace):
        raise SpecError(
            expr.loc, f'"{result.name}" is not a value on its own; write {result.name}.NAME'
        )
    return result


def _eval_any(expr: Expr, scope: Scope) -> Value | Namespace:
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Template):
        return _eval_template(expr, scope)
    if isinstance(expr, Variable):
        if expr.name not in scope:
            names = sorted(n for n in scope if n != PLACEHOLDER)
            raise SpecError(
                expr.loc, f'unknown reference "{expr.name}"', hint=did_you_mean(expr.name, names)
            )
        return scope[expr.name]
    if isinstance(expr, GetAttr):
        target = _eval_any(expr.target, scope)
        if isinstance(target, Namespace):  # a reference: locate it where it starts
            return target.attr(expr.name, expr.loc)
        return _get(target, expr.name, expr.name_loc)
    if isinstance(expr, Index):
        target = _eval_any(expr.target, scope)
        key = _eval(expr.key, scope)
        if isinstance(target, Namespace):
            return target.attr(_object_key(key, expr.key.loc), expr.loc)
        return _index(target, key, expr.key.loc)
    if isinstance(expr, Splat):
        return _eval_splat(expr, scope)
    if isinstance(expr, TupleExpr):
        return tuple(_eval(i, scope) for i in expr.items)
    if isinstance(expr, ObjectExpr):
        out: dict[str, Value] = {}
        for key_expr, value_expr in expr.items:
            key = _object_key(_eval(key_expr, scope), key_expr.loc)
            out[key] = _eval(value_expr, scope)
        return dict(sorted(out.items()))
    if isinstance(expr, Unary):
        return _eval_unary(expr, scope)
    if isinstance(expr, Binary):
        return _eval_binary(expr, scope)
    if isinstance(expr, Conditional):
        cond = _to_bool(_eval(expr.cond, scope), expr.cond.loc, "the condition")
        return _eval(expr.then if cond else expr.otherwise, scope)
    if isinstance(expr, ForExpr):
        return _eval_for(expr, scope)
    if isinstance(expr, Call):
        return _eval_call(expr, scope)
    raise SpecError(expr.loc, f"cannot evaluate {type(expr).__name__}")  # pragma: no cover


def _get(target: Value, name: str, loc: Location) -> Value:
    if isinstance(target, dict):
        if name not in target:
            raise SpecError(
                loc, f'object has no attribute "{name}"', hint=did_you_mean(name, list(target))
            )
        return target[name]
    raise SpecError(loc, f'cannot read attribute "{name}" of {describe(target)}')


def _index(target: Value, key: Value, loc: Location) -> Value:
    if isinstance(target, dict):
        return _get(target, _object_key(key, loc), loc)
    if isinstance(target, tuple):
        number = _to_number(key, loc, "the index")
        if not float(number).is_integer():
            raise SpecError(loc, f"the index must be a whole number, found {format_number(number)}")
        i = int(number)
        if not 0 <= i < len(target):
            raise SpecError(loc, f"index {i} is out of range for a list of {len(target)} items")
        return target[i]
    raise SpecError(loc, f"cannot index {describe(target)}")


def _eval_splat(expr: Splat, scope: Scope) -> Value:
    target = _eval(expr.target, scope)
    if target is None:
        return ()
    items = target if isinstance(target, tuple) else (target,)
    if not expr.ops:
        return items
    last = expr.ops[-1]
    out = []
    for item in items:
        inner = {**scope, PLACEHOLDER: item}
        out.append(_eval(last, inner))
    return tuple(out)


def _object_key(key: Value, loc: Location) -> str:
    text = to_string(key)
    if text is None:
        raise SpecError(loc, f"an object key must be a string, found {describe(key)}")
    return text


def _to_number(value: Value, loc: Location, what: str) -> int | float:
    if isinstance(value, bool):
        raise SpecError(loc, f"{what} must be a number, found a bool")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        parsed = parse_number(value)
        if parsed is not None:
            return parsed
        raise SpecError(loc, f"{what} must be a number, found the string {json.dumps(value)}")
    raise SpecError(loc, f"{what} must be a number, found {describe(value)}")


def _to_bool(value: Value, loc: Location, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise SpecError(loc, f"{what} must be a bool, found {describe(value)}")


def _eval_unary(expr: Unary, scope: Scope) -> Value:
    value = _eval(expr.operand, scope)
    if expr.op == "!":
        return not _to_bool(value, expr.operand.loc, 'the operand of "!"')
    return integral(-_to_number(value, expr.operand.loc, 'the operand of "-"'))


def _eval_binary(expr: Binary, scope: Scope) -> Value:
    op = expr.op
    if op in ("&&", "||"):
        left = _to_bool(_eval(expr.left, scope), expr.left.loc, f'the left operand of "{op}"')
        if (op == "&&" and not left) or (op == "||" and left):
            return left
        return _to_bool(_eval(expr.right, scope), expr.right.loc, f'the right operand of "{op}"')
    left_v = _eval(expr.left, scope)
    right_v = _eval(expr.right, scope)
    if op == "==":
        return equal(left_v, right_v)
    if op == "!=":
        return not equal(left_v, right_v)
    a = _to_number(left_v, expr.left.loc, f'the left operand of "{op}"')
    b = _to_number(right_v, expr.right.loc, f'the right operand of "{op}"')
    if op == "<":
        return a < b
    if op == ">":
        return a > b
    if op == "<=":
        return a <= b
    if op == ">=":
        return a >= b
    if op == "+":
        return integral(a + b)
    if op == "-":
        return integral(a - b)
    if op == "*":
        return integral(a * b)
    if b == 0 and op in ("/", "%"):
        raise SpecError(expr.right.loc, "division by zero")
    if op == "/":
        return integral(a / b)
    if op == "%":
        return integral(math.fmod(a, b))
    raise SpecError(expr.loc, f'unknown operator "{op}"')  # pragma: no cover


def _iterate(value: Value, loc: Location) -> Iterator[tuple[Value, Value]]:
    if isinstance(value, tuple):
        yield from enumerate(value)
    elif isinstance(value, dict):
        yield from sorted(value.items())
    else:
        raise SpecError(loc, f"cannot iterate over {describe(value)}")


def _eval_for(expr: ForExpr, scope: Scope) -> Value:
    collection = _eval(expr.collection, scope)
    items: list[Value] = []
    keyed: dict[str, Value] = {}
    for key, value in _iterate(collection, expr.collection.loc):
        inner = dict(scope)
        inner[expr.value_var] = value
        if expr.key_var is not None:
            inner[expr.key_var] = key
        if expr.cond is not None and not _to_bool(
            _eval(expr.cond, inner), expr.cond.loc, "a for condition"
        ):
            continue
        if expr.key is None:
            items.append(_eval(expr.value, inner))
            continue
        out_key = _object_key(_eval(expr.key, inner), expr.key.loc)
        out_value = _eval(expr.value, inner)
        if expr.group:
            group = keyed.setdefault(out_key, ())
            assert isinstance(group, tuple)
            keyed[out_key] = (*group, out_value)
        elif out_key in keyed:
            raise SpecError(
                expr.key.loc,
                f'duplicate key "{out_key}" in a for expression (add "..." to group values)',
            )
        else:
            keyed[out_key] = out_value
    if expr.key is None:
        return tuple(items)
    return dict(sorted(keyed.items()))


def _interpolate(value: Value, loc: Location) -> str:
    text = to_string(value)
    if text is not None:
        return text
    if isinstance(value, BlockRef):
        raise SpecError(
            loc,
            f"cannot use the block reference {value.id} inside a string; "
            f"write {value.id} on its own",
        )
    raise SpecError(loc, f"cannot interpolate {describe(value)} into a string")


def _eval_template(expr: Template, scope: Scope) -> Value:
    if len(expr.parts) == 1 and isinstance(expr.parts[0], Expr):
        return _eval(expr.parts[0], scope)  # "${x}" is x itself, as in HCL
    out: list[str] = []
    _render(expr.parts, scope, out)
    return "".join(out)


def _render(parts: Sequence[TemplatePart], scope: Scope, out: list[str]) -> None:
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, Expr):
            out.append(_interpolate(_eval(part, scope), part.loc))
        elif isinstance(part, TemplateIf):
            cond = _to_bool(_eval(part.cond, scope), part.cond.loc, "the %{if} condition")
            _render(part.then if cond else part.otherwise, scope, out)
        else:
            for key, value in _iterate(_eval(part.collection, scope), part.collection.loc):
                inner = dict(scope)
                inner[part.value] = value
                if part.key is not None:
                    inner[part.key] = key
                _render(part.body, inner, out)


def _eval_call(expr: Call, scope: Scope) -> Value:
    fn = FUNCTIONS.get(expr.name)
    if fn is None:
        raise SpecError(
            expr.loc,
            f'unknown function "{expr.name}"',
            hint=did_you_mean(expr.name, sorted(FUNCTIONS)),
        )
    args = [_eval(a, scope) for a in expr.args]
    if expr.expand_last and args:
        last = args.pop()
        if not isinstance(last, tuple):
            raise SpecError(expr.args[-1].loc, f'"..." needs a list, found {describe(last)}')
        args.extend(last)
    if len(args) < fn.min_args or (fn.max_args is not None and len(args) > fn.max_args):
        if fn.max_args is None:
            wanted = f"at least {fn.min_args}"
        elif fn.max_args == fn.min_args:
            wanted = str(fn.min_args)
        else:
            wanted = f"{fn.min_args} to {fn.max_args}"
        plural = "" if wanted == "1" else "s"
        raise SpecError(
            expr.loc, f"{expr.name}(): expected {wanted} argument{plural}, got {len(args)}"
        )
    try:
        return fn.impl(*args)
    except FunctionError as exc:
        raise SpecError(expr.loc, f"{expr.name}(): {exc}") from None
