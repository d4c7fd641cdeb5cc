"""Turn a pytest-benchmark JSON file of this suite into a Markdown table.

python -m benchmarks.report_suite benchmarks/results/suite.json > benchmarks/results/suite.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

MIB = 1 << 20


def _mib(x: Any) -> str:
    return "—" if x is None else f"{x / MIB:.1f}"


def markdown(data: dict[str, Any]) -> str:
    m = data.get("machine_info", {})
    cpu = m.get("cpu", {})
    lines = [
        "# pipeline benchmark suite",
        "",
        f"{data.get('datetime', '?')}, {cpu.get('count', '?')} CPUs"
        f" ({cpu.get('brand_raw', '?')}), Python {m.get('python_version', '?')};"
        " wall seconds of the `pipeline` child process, medians (min-max) over the rounds.",
        "",
        "| benchmark | median s | min-max s | rounds | nodes (built / cached) | hit ratio"
        " | store growth MiB | naive MiB | unique MiB | saved MiB | peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for b in data["benchmarks"]:
        s = b["stats"]
        e = b.get("extra_info", {})
        nodes = (
            f"{e['unique_nodes']} ({e['nodes_built']} / {e['nodes_cached']})"
            if "nodes_built" in e
            else str(e.get("unique_nodes", "—"))
        )
        ratio = e.get("cache_hit_ratio")
        lines.append(
            f"| {b['name']} | {s['median']:.3f} | {s['min']:.3f}-{s['max']:.3f} |"
            f" {s['rounds']} | {nodes} | {'—' if ratio is None else f'{ratio:.2f}'} |"
            f" {_mib(e.get('store_growth_bytes'))} | {_mib(e.get('naive_bytes'))} |"
            f" {_mib(e.get('unique_bytes'))} | {_mib(e.get('disk_saved_bytes'))} |"
            f" {_mib(e.get('peak_rss_bytes'))} |"
        )
    plan = [b for b in data["benchmarks"] if b["name"].startswith("test_plan")]
    for b in plan:
        e = b["extra_info"]
        lines += [
            "",
            f"`{b['name']}`: {e['apps']} apps in {e['spec_files']} spec files,"
            f" {e['unique_nodes']} unique nodes; first plan (empty context digest cache)"
            f" {e['first_run_seconds']:.2f} s, peak RSS {_mib(e['first_run_peak_rss_bytes'])} MiB.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.report_suite")
    p.add_argument("json", type=Path, help="a --benchmark-json output of this suite")
    args = p.parse_args(argv)
    sys.stdout.write(markdown(json.loads(args.json.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
