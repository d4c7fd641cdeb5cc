"""The package's shape, enforced: import layers (import-linter's contract in
pyproject.toml), one home per third-party library, and no module over 600 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"
MAX_LINES = 600

# third-party library -> the only module (or package prefix) that may import it
HOMES = {
    "hcl2": ("pipeline.hcl.syntax",),
    "lark": ("pipeline.hcl.syntax",),
    "networkx": ("pipeline.graph",),
    "httpx": ("pipeline.registry.transport",),
    "rich": ("pipeline.report",),
    "click": ("pipeline.cli.",),
    "pathspec": ("pipeline.fs.patterns",),
    "plotly": ("pipeline.htmlreport.plots",),
    "dask": ("pipeline.build.cluster",),
    "distributed": ("pipeline.build.cluster",),
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out.append((name, path))
    return out


def _imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_import_layers_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run(
        [str(lint), "--no-cache"],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("library", sorted(HOMES))
def test_each_library_has_one_home(library: str) -> None:
    homes = HOMES[library]
    users = [
        name
        for name, path in _modules()
        if library in _imported(path) and not any(name.startswith(h) for h in homes)
    ]
    assert users == [], f"{library} imported outside {homes}: {users}"


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        name: n
        for name, path in _modules()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def test_sandbox_package_imports_nothing() -> None:
    """The sandbox child imports ``pipeline.sandbox.init``: both ``__init__`` files on the
    way must stay free of imports so each step starts fast."""
    for init in (PACKAGE / "__init__.py", PACKAGE / "sandbox" / "__init__.py"):
        assert _imported(init) == set(), init


def _tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / name), *args],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        check=False,
    )


def test_types_check() -> None:
    """mypy with the configuration in pyproject.toml (strict on the pure core)."""
    proc = _tool("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lint_and_format_are_clean() -> None:
    for args in (
        ("check", "pipeline", "tests", "benchmarks"),
        ("format", "--check", "pipeline", "tests", "benchmarks"),
    ):
        proc = _tool("ruff", *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
