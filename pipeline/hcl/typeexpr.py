"""HCL type expressions (``string``, ``list(number)``, ``object({a = string})``) read
from syntax, as HashiCorp's ``ext/typeexpr`` reads them. Pure.

Type expressions are keywords and calls, never evaluated: ``type = "string"`` or
``type = lower("string")`` are errors, as bake documents. ``optional(T)`` marks an
object attribute that may be absent (it becomes null).
"""

from __future__ import annotations

from pipeline.errors import SpecError, did_you_mean
from pipeline.hcl.cty import (
    BOOL,
    DYNAMIC,
    NUMBER,
    STRING,
    ListType,
    MapType,
    ObjectType,
    SetType,
    TupleType,
    Type,
)
from pipeline.hcl.values import Call, Expr, Literal, ObjectExpr, Template, TupleExpr, Variable

KEYWORDS = {"string": STRING, "number": NUMBER, "bool": BOOL, "any": DYNAMIC}
CONSTRUCTORS = ("list", "set", "map", "object", "tuple")


def type_of_expr(expr: Expr) -> Type:
    """The type an expression spells; SpecError located at the part that is wrong."""
    return _type(expr, in_object=False)


def _type(expr: Expr, in_object: bool) -> Type:
    if isinstance(expr, Variable):
        if expr.name in KEYWORDS:
            return KEYWORDS[expr.name]
        if expr.name in CONSTRUCTORS:
            raise SpecError(expr.loc, f'the type constructor "{expr.name}" needs an argument')
        raise SpecError(
            expr.loc,
            f'"{expr.name}" is not a type',
            hint=did_you_mean(expr.name, [*KEYWORDS, *CONSTRUCTORS]),
        )
    if isinstance(expr, Call) and expr.name in CONSTRUCTORS:
        if len(expr.args) != 1 or expr.expand_last:
            raise SpecError(expr.loc, f"{expr.name}(...) takes exactly one argument")
        arg = expr.args[0]
        if expr.name == "list":
            return ListType(_type(arg, False))
        if expr.name == "set":
            return SetType(_type(arg, False))
        if expr.name == "map":
            return MapType(_type(arg, False))
        if expr.name == "tuple":
            if not isinstance(arg, TupleExpr):
                raise SpecError(arg.loc, "tuple(...) takes a list of types: tuple([string])")
            return TupleType(tuple(_type(e, False) for e in arg.items))
        if not isinstance(arg, ObjectExpr):
            raise SpecError(arg.loc, "object(...) takes an object of types: object({a = string})")
        attrs: dict[str, Type] = {}
        optional: set[str] = set()
        for key, value in arg.items:
            name = _key(key)
            if isinstance(value, Call) and value.name == "optional":
                if len(value.args) != 1:
                    raise SpecError(
                        value.loc,
                        "optional(...) takes one type here (defaults are not supported)",
                    )
                optional.add(name)
                attrs[name] = _type(value.args[0], True)
            else:
                attrs[name] = _type(value, True)
        return ObjectType.of(attrs, optional)
    if isinstance(expr, Call) and expr.name == "optional":
        raise SpecError(expr.loc, "optional(...) is only allowed for object attributes")
    if isinstance(expr, Call):
        raise SpecError(
            expr.loc,
            f'"{expr.name}" is not a type constructor',
            hint=did_you_mean(expr.name, CONSTRUCTORS),
        )
    if isinstance(expr, Template | Literal):
        raise SpecError(
            expr.loc, "a type is written as a keyword like string or list(string), not a value"
        )
    raise SpecError(expr.loc, "a type expression is required here")


def _key(expr: Expr) -> str:
    if isinstance(expr, Literal) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, Template) and all(isinstance(p, str) for p in expr.parts):
        return "".join(str(p) for p in expr.parts)
    if isinstance(expr, Variable):
        return expr.name
    raise SpecError(expr.loc, "an object type's attribute names must be literal names")
