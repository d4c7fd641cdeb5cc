"""Our HCL specification cases (HashiCorp's spec test format) and function tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import SpecError
from pipeline.hcl import cty
from pipeline.hcl.convert import convert
from pipeline.hcl.evaluator import SPECIAL, evaluate_value
from pipeline.hcl.files import parse
from pipeline.hcl.functions import FUNCTIONS
from pipeline.hcl.typeexpr import type_of_expr
from pipeline.hcl.values import Block
from tests.hclspec import cases, run_case

CASES = Path(__file__).parent / "cases"
SPEC_CASES = cases(CASES / "hcl-spec")


@pytest.mark.parametrize("case", SPEC_CASES, ids=[str(c.relative_to(CASES)) for c in SPEC_CASES])
def test_spec_case(case: Path) -> None:
    assert run_case(case) == []


def function_cases() -> list[tuple[str, Block]]:
    out = []
    for path in sorted((CASES / "hcl-functions").glob("*.hcl")):
        for item in parse(path.read_text(encoding="utf-8"), str(path)).body:
            assert isinstance(item, Block), f"{item.loc}: only case blocks belong here"
            out.append((f"{path.stem}/{item.type}/{item.labels[0]}", item))
    return out


FUNCTION_CASES = function_cases()


@pytest.mark.parametrize(("name", "case"), FUNCTION_CASES, ids=[n for n, _ in FUNCTION_CASES])
def test_function_case(name: str, case: Block) -> None:
    attrs = {a.name: a for a in case.attributes}
    assert set(attrs) <= {"call", "result", "type", "error"}, f"{case.loc}: unknown keys"
    call = attrs["call"].expr
    if "error" in attrs:
        wanted = cty.plain(evaluate_value(attrs["error"].expr, {}))
        with pytest.raises(SpecError) as info:
            evaluate_value(call, {})
        assert str(wanted) in str(info.value)
        return
    got = evaluate_value(call, {})
    expected = evaluate_value(attrs["result"].expr, {})
    if "type" in attrs:
        want_type = type_of_expr(attrs["type"].expr)
        assert got.type == want_type, f"{case.loc}: type {got.type}, expected {want_type}"
        expected = convert(expected, want_type)
    else:
        assert not isinstance(got.data, tuple | dict), f"{case.loc}: give the exact type"
    assert got == expected, f"{case.loc}: {got!r} != {expected!r}"


def test_every_function_has_cases() -> None:
    covered = {case.type for _, case in FUNCTION_CASES}
    assert set(FUNCTIONS) - {"try", "can", "convert"} <= covered
    assert set(SPECIAL) <= covered
