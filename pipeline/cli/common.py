"""What every command shares: the context object, the workspace factory and the option
groups (spec, build and registry options)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline.build.workspace import Workspace, parse_overrides

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Ctx:
    store_path: Path


def workspace(ctx: click.Context, specs: Path | None = None, sets: Sequence[str] = ()) -> Workspace:
    """The command's workspace: the store from ``--store`` and, for fleet commands, the
    specs directory and ``--set`` overrides."""
    obj = ctx.find_object(Ctx)
    assert obj is not None
    return Workspace(
        obj.store_path,
        specs=specs,
        overrides=parse_overrides(sets),
        on_note=lambda note: click.echo(note, err=True),
    )


def spec_options(fn: F) -> F:
    fn = click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="NAME=VALUE",
        help="Override a spec variable (repeatable).",
    )(fn)
    fn = click.option(
        "--specs",
        type=click.Path(path_type=Path),
        default=Path("specs"),
        show_default=True,
        help="Directory of *.hcl spec files.",
    )(fn)
    return fn


def registry_options(fn: F) -> F:
    fn = click.option(
        "--ca-bundle",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        default=None,
        help="CA bundle to verify registries with and to mount read-only into RUN steps "
        "(default: PIPELINE_CA_BUNDLE, PIP_CERT, SSL_CERT_FILE or REQUESTS_CA_BUNDLE from "
        "the environment, else the system's).",
    )(fn)
    fn = click.option(
        "--insecure",
        is_flag=True,
        help="Allow plain HTTP to registries that are not on loopback (127.0.0.1 and "
        "localhost always use plain HTTP).",
    )(fn)
    return fn


def build_options(fn: F) -> F:
    fn = click.option(
        "--progress",
        type=click.Choice(["auto", "plain", "rich", "quiet"]),
        default="auto",
        show_default=True,
    )(fn)
    fn = click.option(
        "-j", "--jobs", type=int, default=None, help="Parallel steps (default: CPUs)."
    )(fn)
    fn = click.option("-v", "--verbose", is_flag=True, help="Stream step output (plain progress).")(
        fn
    )
    fn = click.option(
        "--json-report",
        type=click.Path(path_type=Path),
        default=None,
        help="Also write the build's totals and per-node outcomes as JSON here.",
    )(fn)
    fn = click.option(
        "--cache-from", metavar="REGISTRY/REPO", help="Fetch layers from this remote cache."
    )(fn)
    fn = click.option(
        "--cache-to", metavar="REGISTRY/REPO", help="Publish layers to this remote cache."
    )(fn)
    fn = click.option(
        "--update", is_flag=True, help="Re-resolve registry bases and rewrite pipeline.lock."
    )(fn)
    return registry_options(fn)


def factoring_options(fn: F) -> F:
    """``--no-factoring`` and ``--layer-budget``, for ``plan``, ``build`` and ``build-all``."""
    fn = click.option(
        "--no-factoring",
        "no_factoring",
        is_flag=True,
        help="One pip layer per set, as written (fleet-wide; env PIPELINE_FACTORING=off).",
    )(fn)
    fn = click.option(
        "--layer-budget",
        type=click.IntRange(min=1),
        default=None,
        help="Most layers an app image may have (default 100; env PIPELINE_LAYER_BUDGET).",
    )(fn)
    return fn


def set_factoring(ws: Workspace, no_factoring: bool, layer_budget: int | None) -> None:
    if no_factoring:
        ws.factoring = False
    if layer_budget is not None:
        ws.layer_budget = layer_budget


def cluster_options(fn: F) -> F:
    """``--cluster``, for every command that builds (``build-all``, ``build``, ``bake``)."""
    fn = click.option(
        "--cluster",
        metavar="local:N|tcp://HOST:PORT",
        default=None,
        help="Build on a Dask cluster: N worker processes on this machine sharing the "
        "store, or the scheduler of a running cluster, whose workers share layers through "
        "the --cache-to registry (see docs/distributed.md).",
    )(fn)
    return fn
