"""The merged DAG as an SVG drawing: the layout is Graphviz's ``dot`` (a subprocess;
Debian's ``graphviz``). Shared nodes are filled; each node's tooltip lists its apps."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

from pipeline.digest import short
from pipeline.errors import PipelineError
from pipeline.htmlreport.data import ReportData, app_list, short_app

SHARED_FILL = "#f6c667"
OWN_FILL = "#dfe8f3"
BASE_FILL = "#c9d6c1"
OUTPUT_FILL = "#ffffff"


def _bytes(n: int | None) -> str:
    if n is None:
        return "not built"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _q(text: str) -> str:
    """A dot string literal (a newline in ``text`` becomes dot's ``\\n``)."""
    return json.dumps(text, ensure_ascii=False)


def _clip(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def dot_source(data: ReportData) -> str:
    """The Graphviz source of the drawing. Pure."""
    out = [
        "digraph pipeline {",
        "  rankdir=LR; bgcolor=transparent; nodesep=0.18; ranksep=0.45;",
        '  node [shape=box, style="rounded,filled", fontname="DejaVu Sans Mono",'
        " fontsize=10, penwidth=1];",
        '  edge [color="#7a869a", arrowsize=0.6];',
    ]
    for n in data.nodes:
        fill = BASE_FILL if n.kind == "base" else SHARED_FILL if n.shared else OWN_FILL
        shared = (
            f"shared by {len(n.apps)} apps" if n.shared else short_app(n.apps[0]) if n.apps else ""
        )
        label = f"{_clip(n.label)}\n{short(n.key)} · {_bytes(n.size)}\n{shared}"
        tip = f"{n.label}\n{n.key}\napps: {app_list(n.apps, 50)}"
        pen = ', penwidth=2, color="#b07a00"' if n.shared else ', color="#6b7a90"'
        out.append(
            f"  n{short(n.key)} [label={_q(label)}, tooltip={_q(tip)}, fillcolor={_q(fill)},"
            f' class="{"shared" if n.shared else "own"}"{pen}];'
        )
    for a, b in data.edges:
        out.append(f"  n{short(a)} -> n{short(b)};")
    for i, (image_id, top) in enumerate(data.outputs):
        out.append(
            f"  o{i} [shape=ellipse, style=filled, fillcolor={_q(OUTPUT_FILL)},"
            f' label={_q(short_app(image_id))}, class="output"];'
        )
        if top:
            out.append(f"  n{short(top)} -> o{i};")
    out.append("}")
    return "\n".join(out)


def render_svg(data: ReportData, timeout: float = 120) -> str:
    """The drawing as inline SVG (no XML prolog). PipelineError when ``dot`` is missing
    or fails."""
    tool = shutil.which("dot")
    if tool is None:
        raise PipelineError("graphviz's dot is not installed (apt-get install graphviz)")
    proc = subprocess.run(
        [tool, "-Tsvg"],
        input=dot_source(data),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise PipelineError(f"dot -Tsvg failed (exit {proc.returncode}): {tail}")
    svg = proc.stdout
    start = svg.find("<svg")
    if start < 0:
        raise PipelineError("dot -Tsvg wrote no <svg> element")
    svg = svg[start:]
    return re.sub(r"<!--.*?-->", "", svg, flags=re.S)
