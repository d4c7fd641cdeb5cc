"""The parts every HCL function family is written with: the registry
(:data:`FUNCTIONS`, filled by :func:`fn`), parameters, errors, and :func:`call`, which
checks arity and nulls and converts each argument to its parameter's type the way
go-cty does. The families (``fn_*``) import this module; :mod:`pipeline.hcl.functions`
imports the families, so the registry is complete once that module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from pipeline.hcl import cty
from pipeline.hcl.convert import ConversionError, convert
from pipeline.hcl.cty import DYNAMIC, NUMBER, STRING, Type, V


class FunctionError(Exception):
    """Raised by a function implementation; the evaluator adds location and name."""


class ArgError(FunctionError):
    """A problem with one argument (``index`` counts from 0)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"argument {index + 1} {message}")
        self.index = index


@dataclass(frozen=True)
class Param:
    name: str
    type: Type = DYNAMIC
    allow_null: bool = False


Impl = Callable[..., V]


@dataclass(frozen=True)
class Function:
    """A callable HCL function. ``var_param`` takes any number of extra arguments;
    ``volatile`` marks results that change between runs (a key built from one is not
    reproducible); ``user`` marks functions a spec defines (they shadow try/can)."""

    params: tuple[Param, ...]
    impl: Impl
    var_param: Param | None = None
    volatile: bool = False
    user: bool = False
    description: str = ""

    @property
    def min_args(self) -> int:
        return len(self.params)

    @property
    def max_args(self) -> int | None:
        return None if self.var_param is not None else len(self.params)


FUNCTIONS: dict[str, Function] = {}


def fn(
    name: str,
    *params: Param,
    var: Param | None = None,
    volatile: bool = False,
    description: str = "",
) -> Callable[[Impl], Impl]:
    """Register the decorated implementation as the function ``name``."""

    def register(impl: Impl) -> Impl:
        FUNCTIONS[name] = Function(tuple(params), impl, var, volatile, False, description)
        return impl

    return register


def call(function: Function, args: list[V], name: str) -> V:
    """Check, convert and run: see the module docstring. Raises FunctionError."""
    n = len(args)
    low, high = function.min_args, function.max_args
    if n < low or (high is not None and n > high):
        if high is None:
            wanted = f"at least {low}"
        elif high == low:
            wanted = str(low)
        else:
            wanted = f"{low} to {high}"  # pragma: no cover - no such function yet
        plural = "" if wanted == "1" else "s"
        raise FunctionError(f"expected {wanted} argument{plural}, got {n}")
    converted: list[V] = []
    for i, arg in enumerate(args):
        param = function.params[i] if i < low else function.var_param
        assert param is not None
        converted.append(convert_arg(arg, param, i))
    return function.impl(*converted)


def convert_arg(arg: V, param: Param, index: int) -> V:
    if arg.is_null:
        if not param.allow_null:
            raise ArgError(index, "must not be null")
        return arg if isinstance(param.type, cty.Dynamic) else cty.null(param.type)
    try:
        return convert(arg, param.type)
    except ConversionError as exc:
        if exc.path:
            raise ArgError(index, f"{exc.path}: {exc.message}") from None
        raise ArgError(index, f"must be {phrase(param.type)}, found {what(arg)}") from None


def phrase(t: Type) -> str:
    """What a parameter type asks for, in messages."""
    if isinstance(t, cty.ListType | cty.TupleType):
        return "a list"
    if isinstance(t, cty.SetType):
        return "a set"
    if isinstance(t, cty.MapType):
        return "a map"
    if isinstance(t, cty.ObjectType):
        return "an object"
    if t == cty.BOOL:
        return "a bool"
    if t == NUMBER:
        return "a number"
    if t == STRING:
        return "a string"
    return "a value"


def what(value: V) -> str:
    if isinstance(value.type, cty.TupleType) and not value.is_null:
        return "a list"
    return cty.describe(value)


# --------------------------------------------------------------------------- helpers


def whole(value: V, index: int, what_: str = "") -> int:
    """A number argument as an int; ArgError unless it is a whole number."""
    number = value.number
    if number.denominator != 1:
        label = f"{what_} " if what_ else ""
        raise ArgError(index, f"{label}must be a whole number, found {cty.show(value)}")
    return number.numerator


def num(value: int | float | Fraction) -> V:
    return cty.number(value)


def text(value: str) -> V:
    return cty.string(value)


STRINGS = cty.ListType(STRING)


def string_list(items: list[str]) -> V:
    return cty.list_of(STRING, [cty.string(s) for s in items])
