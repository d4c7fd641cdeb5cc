"""Commands for CI: ``why``, ``affected``, ``verify``, ``bench`` and ``report``
(see docs/ci.md)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.common import spec_options, workspace
from pipeline.errors import PipelineError, UsageError

if TYPE_CHECKING:
    from pipeline.build.why import AppWhy

FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)


@click.command()
@click.argument("app")
@click.argument("step", required=False)
@spec_options
@FORMAT
@click.pass_context
def why(
    ctx: click.Context, app: str, step: str | None, specs: Path, sets: Sequence[str], fmt: str
) -> None:
    """Say which input of each layer's cache key changed.

    For every layer of APP (an app, image or group) that is not in the store or differs
    from the app's last recorded build: the command, env var, workdir, user, parent or
    copied files that differ. STEP limits it to one layer: its position (0 is the
    base), a key prefix, or a part of its label."""
    from pipeline.build import why as explain

    ws = workspace(ctx, specs, sets)
    targets = ws.select([app])
    graph = ws.compile(targets)
    results = [explain.why_app(ws.store, graph, t, ws.copy_manifests) for t in targets]
    if step is not None:
        results = [_only_step(r, step) for r in results]
    if fmt == "json":
        click.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
        return
    for r in results:
        if step is not None and not r.nodes:
            against = f"build #{r.compared_build}" if r.compared_build else "the store"
            click.echo(f"{r.app}: no layer matching {step!r} differs from {against}")
        else:
            click.echo(explain.render(r))


def _only_step(result: AppWhy, step: str) -> AppWhy:
    if step.isdigit():
        kept = tuple(n for n in result.nodes if n.position == int(step))
    else:
        prefix = step.removeprefix("sha256:")
        kept = tuple(
            n
            for n in result.nodes
            if n.key.removeprefix("sha256:").startswith(prefix) or step.lower() in n.label.lower()
        )
    return dataclasses.replace(result, nodes=kept)


@click.command()
@click.option("--since", required=True, metavar="REF", help="The git revision to compare with.")
@spec_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["names", "json"]),
    default="names",
    show_default=True,
)
@click.pass_context
def affected(ctx: click.Context, since: str, specs: Path, sets: Sequence[str], fmt: str) -> None:
    """List the images (and groups) whose image would change since git REF.

    Exit status: 0 when nothing is affected, 1 when something is, 2 on an error."""
    from pipeline.build.affected import affected as compute
    from pipeline.build.workspace import parse_overrides

    try:
        found = compute(specs, since, parse_overrides(sets), os.environ)
    except PipelineError as exc:
        if exc.exit_code == 2:
            raise
        raise UsageError(str(exc)) from None
    if fmt == "json":
        body = dataclasses.asdict(found)
        body["names"] = found.names()
        click.echo(json.dumps(body, indent=2))
    else:
        for name in found.names():
            click.echo(name)
    sys.exit(1 if found.any else 0)  # SystemExit passes through click's main


@click.command()
@click.argument("names", nargs=-1)
@spec_options
@click.option("-j", "--jobs", type=int, default=None, help="Parallel steps (default: CPUs).")
@click.option(
    "--progress",
    type=click.Choice(["auto", "plain", "rich", "quiet"]),
    default="quiet",
    show_default=True,
)
@FORMAT
@click.pass_context
def verify(
    ctx: click.Context,
    names: Sequence[str],
    specs: Path,
    sets: Sequence[str],
    jobs: int | None,
    progress: str,
    fmt: str,
) -> None:
    """Rebuild the apps' layers in a scratch store and compare them with the store's.

    Exit status 1 when a layer differs (the first differing layer and its differing
    files are shown), 2 when a layer to compare is not built yet."""
    from pipeline import report
    from pipeline.build import verify as check
    from pipeline.build.executor import BuildOptions

    ws = workspace(ctx, specs, sets)
    targets = ws.select(names) if names else list(ws.fleet.outputs())
    graph = ws.compile(targets)
    options = BuildOptions(
        jobs=jobs or os.cpu_count() or 1, epoch=ws.epoch, ca_bundle=ws.ca_bundle()
    )
    reporter = report.make_reporter(progress, False, sys.stderr)
    result = check.verify(ws.store, graph, targets, options, reporter)
    if fmt == "json":
        body = dataclasses.asdict(result)
        body["ok"] = result.ok
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(check.render(result))
    if not result.ok:
        sys.exit(1)


@click.command()
@spec_options
@click.option(
    "--apps",
    "apps",
    multiple=True,
    metavar="NAMES",
    help="Apps, images or groups to change, comma-separated or repeated (default: all).",
)
@click.option("--rounds", type=int, default=3, show_default=True, help="Rounds per phase.")
@click.option(
    "--change",
    type=click.Choice(["source", "deps", "base"]),
    default="source",
    show_default=True,
    help="What each app's measured change is.",
)
@click.option("-j", "--jobs", type=int, default=None, help="Parallel steps (default: CPUs).")
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path),
    default=Path("pipeline-bench.json"),
    show_default=True,
    help="Where to write the results as JSON.",
)
@click.pass_context
def bench(
    ctx: click.Context,
    specs: Path,
    sets: Sequence[str],
    apps: Sequence[str],
    rounds: int,
    change: str,
    jobs: int | None,
    json_out: Path,
) -> None:
    """Measure cold, no-op and after-a-change builds of your fleet, in a temporary copy.

    Your specs, sources and store are only read: the builds run on a copy, into a
    scratch store holding only your fleet's bases."""
    from pipeline.build import bench as measure
    from pipeline.report import human_bytes

    if sets:
        raise UsageError("--set: bench measures the fleet as its files define it")
    ws = workspace(ctx, specs, sets)
    names = [n for group in apps for n in group.split(",") if n]
    chosen = ws.select(names) if names else list(ws.fleet.outputs())

    def progress(phase: measure.Phase) -> None:
        what = f" {phase.app}" if phase.app else ""
        click.echo(f"measured {phase.name}{what}: {phase.seconds:.2f}s", err=True)

    found = measure.run_bench(
        specs, ws.store, ws.load_fleet(cached=False), chosen, change, rounds, jobs, ws.epoch,
        progress,
    )  # fmt: skip
    json_out.write_text(json.dumps(found.to_json(), indent=2) + "\n")
    click.echo(measure.render(found, human_bytes))
    click.echo(f"wrote {json_out}")


@click.command("report")
@spec_options
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file to write.",
)
@click.option("--builds", type=int, default=30, show_default=True, help="Recent builds shown.")
@click.pass_context
def report_(
    ctx: click.Context, specs: Path, sets: Sequence[str], output: Path, builds: int
) -> None:
    """Write one self-contained HTML report: the merged DAG, bytes per app, recent
    builds' duration and cache hit ratio, the slowest steps."""
    from pipeline.htmlreport import data, page

    ws = workspace(ctx, specs, sets)
    graph = ws.compile()
    title = f"pipeline report: {specs}"
    text = page.render(data.gather(ws.store, graph, title, builds=builds))
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output} ({len(text.encode()) // 1024} KiB)")
