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

# The families register themselves on import.
from pipeline.hcl import (
    fn_collections,
    fn_dates,
    fn_encoding,
    fn_format,
    fn_misc,
    fn_numbers,
    fn_regex,
    fn_strings,
)
from pipeline.hcl.fnbase import (
    FUNCTIONS,
    STRINGS,
    ArgError,
    Function,
    FunctionError,
    Param,
    call,
    fn,
    num,
    string_list,
    text,
    whole,
)

__all__ = [
    "FUNCTIONS",
    "STRINGS",
    "ArgError",
    "Function",
    "FunctionError",
    "Param",
    "call",
    "fn",
    "fn_collections",
    "fn_dates",
    "fn_encoding",
    "fn_format",
    "fn_misc",
    "fn_numbers",
    "fn_regex",
    "fn_strings",
    "num",
    "string_list",
    "text",
    "whole",
]
