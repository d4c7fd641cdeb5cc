"""The HCL function library: the registry, and calling a function the way go-cty does.

Every function has typed parameters; :func:`call` checks the arity, refuses null
arguments unless the parameter allows them, converts each argument to its parameter's
type (``upper(5)`` is ``"5"``, ``join(",", [1, 2])`` is ``"1,2"``) and then runs the
implementation, which takes and returns :class:`~pipeline.hcl.cty.V` values and raises
:class:`FunctionError` / :class:`ArgError`; the evaluator adds the location.

:data:`FUNCTIONS` holds bake's whole function set (go-cty's stdlib, go-cty-funcs'
encoding/crypto/cidr/uuid functions and bake's own additions), registered by the family
modules imported at the bottom, plus ``startswith``, ``endswith``, ``tostring``,
``tonumber``, ``tobool``, ``tolist``, ``toset`` and ``tomap``. ``try``, ``can`` and
``convert`` see their arguments unevaluated and live in the evaluator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
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


_REGISTRY: dict[str, Function] = {}


class _Functions(Mapping[str, Function]):
    """The standard library by name. The families (``fn_*`` modules: dates, encodings,
    regexes...) register themselves when they are imported, which happens on the first
    look-up, so evaluating specs that call no function never loads them."""

    def _table(self) -> dict[str, Function]:
        if not _LOADED:
            with _LOAD_LOCK:  # another thread may be loading them: wait for it
                if not _LOADED:
                    _load_families()
        return _REGISTRY

    def __getitem__(self, name: str) -> Function:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


FUNCTIONS: Mapping[str, Function] = _Functions()
_LOADED: list[bool] = []
_LOAD_LOCK = threading.Lock()


def fn(
    name: str,
    *params: Param,
    var: Param | None = None,
    volatile: bool = False,
    description: str = "",
) -> Callable[[Impl], Impl]:
    """Register the decorated implementation as the function ``name``."""

    def register(impl: Impl) -> Impl:
        _REGISTRY[name] = Function(tuple(params), impl, var, volatile, False, description)
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


def _load_families() -> None:
    """Import the families, which register themselves (see :class:`_Functions`)."""
    from pipeline.hcl import (  # noqa: F401
        fn_collections,
        fn_dates,
        fn_encoding,
        fn_format,
        fn_misc,
        fn_numbers,
        fn_regex,
        fn_strings,
    )

    _LOADED.append(True)


__all__ = [
    "FUNCTIONS",
    "ArgError",
    "Function",
    "FunctionError",
    "Param",
    "call",
    "fn",
]
