"""Fleet commands: ``validate``, ``plan``, ``build-all`` and ``build``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from pipeline.cli.common import (
    build_options,
    cluster_options,
    factoring_options,
    set_factoring,
    spec_options,
    workspace,
)


@click.command()
@spec_options
@click.pass_context
def validate(ctx: click.Context, specs: Path, sets: Sequence[str]) -> None:
    """Check the specs: syntax, types, references, cycles."""
    fleet = workspace(ctx, specs, sets).load_fleet(cached=False)
    n_apps = sum(1 for d in fleet.images.values() if d.is_app)
    click.echo(f"{specs}: ok: {len(fleet.files)} files, {n_apps} apps, {len(fleet.images)} images")


@click.command()
@spec_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "dot", "mermaid"]),
    default="text",
    show_default=True,
)
@factoring_options
@click.pass_context
def plan(
    ctx: click.Context,
    specs: Path,
    sets: Sequence[str],
    fmt: str,
    no_factoring: bool = False,
    layer_budget: int | None = None,
) -> None:
    """Show the merged layer DAG, what is shared, and how pip packages are layered."""
    from pipeline import report
    from pipeline.build.volatile import volatile_keys

    ws = workspace(ctx, specs, sets)
    set_factoring(ws, no_factoring, layer_budget)
    graph = ws.compile()
    volatile = volatile_keys(graph, ws.fleet)
    if fmt == "json":
        click.echo(json.dumps(report.plan_json(graph, volatile), indent=2, sort_keys=True))
    elif fmt == "dot":
        click.echo(report.plan_dot(graph))
    elif fmt == "mermaid":
        click.echo(report.plan_mermaid(graph))
    else:
        click.echo(report.plan_text(graph, volatile))


def _run_build(
    ctx: click.Context,
    specs: Path,
    sets: Sequence[str],
    names: Sequence[str] | None,
    jobs: int | None,
    progress: str,
    verbose: bool,
    json_report: Path | None,
    ca_bundle: Path | None,
    cache_from: str | None = None,
    cache_to: str | None = None,
    insecure: bool = False,
    update: bool = False,
    cluster: str | None = None,
    no_factoring: bool = False,
    layer_budget: int | None = None,
) -> None:
    from pipeline import report
    from pipeline.build.executor import BuildOptions
    from pipeline.build.outputs import check, place
    from pipeline.errors import BuildFailed

    if json_report is not None:  # refuse before building, not after
        check(json_report, directory=False, replaceable=_report)
    on_cluster = None
    if cluster is not None:
        from pipeline.build.cluster import ClusterOptions, parse_cluster

        on_cluster = ClusterOptions(parse_cluster(cluster), jobs, insecure, verbose)
    ws = workspace(ctx, specs, sets)
    set_factoring(ws, no_factoring, layer_budget)
    ws.pip_update = update
    ca_bundle = ws.ca_bundle(ca_bundle)

    def pulled(ref: str, digest: str) -> None:
        click.echo(f"pulled {ref} ({digest})", err=True)

    ws.ensure_registry_bases(update, insecure, ca_bundle, on_pull=pulled)
    targets = ws.select(names) if names else list(ws.fleet.outputs())
    graph = ws.compile(targets)
    options = BuildOptions(
        jobs=jobs or os.cpu_count() or 1,
        epoch=ws.epoch,
        ca_bundle=ca_bundle,
        **ws.remote_caches(cache_from, cache_to, insecure, ca_bundle),
    )
    reporter = report.make_reporter(progress, verbose, sys.stderr)
    if on_cluster is None:
        graph = ws.resolve_pip(graph, targets, options, reporter)
    result = ws.build(graph, targets, options, reporter, " ".join(sys.argv[1:]), on_cluster)
    click.echo(report.summary_text(graph, result))
    if json_report is not None:
        data = json.dumps(report.build_json(graph, result), indent=2) + "\n"
        place(json_report, lambda tmp: tmp.write_text(data), directory=False, replaceable=_report)
    if result.failures:
        raise BuildFailed(result.failures)


def _report(path: Path) -> bool:
    """An earlier ``--json-report`` of ours (a JSON object with our top-level keys)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(value, dict) and {"totals", "images", "nodes"} <= value.keys()


@click.command("build-all")
@spec_options
@build_options
@cluster_options
@factoring_options
@click.pass_context
def build_all(ctx: click.Context, /, specs: Path, sets: Sequence[str], **opts: Any) -> None:
    """Build every app (and every tagged image) of the fleet."""
    _run_build(ctx, specs, sets, None, **opts)


@click.command()
@click.argument("names", nargs=-1, required=True)
@spec_options
@build_options
@cluster_options
@factoring_options
@click.pass_context
def build(
    ctx: click.Context, /, names: Sequence[str], specs: Path, sets: Sequence[str], **opts: Any
) -> None:
    """Build the named apps, images or groups."""
    _run_build(ctx, specs, sets, names, **opts)
