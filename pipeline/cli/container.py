"""``pipeline run``: an image's entrypoint in the sandbox, like ``docker run``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.build.workspace import parse_overrides
from pipeline.cli.common import spec_options, workspace
from pipeline.errors import UsageError

if TYPE_CHECKING:
    from pipeline.build.executor import BuildResult
    from pipeline.build.workspace import Workspace


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.option("-p", "--publish", multiple=True, metavar="[ADDR:]HOST_PORT:PORT")
@click.option("-e", "--env", "envs", multiple=True, metavar="NAME=VALUE")
@click.option("--network", type=click.Choice(["default", "none"]), default="default")
@click.option(
    "--watch",
    is_flag=True,
    help="Build NAME from --specs first, rebuild when its inputs change and restart "
    "the container on each new image.",
)
@spec_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_(
    ctx: click.Context,
    name: str,
    publish: Sequence[str],
    envs: Sequence[str],
    network: str,
    watch: bool,
    specs: Path,
    sets: Sequence[str],
    command: Sequence[str],
) -> None:
    """Run an image's entrypoint in the sandbox (host network, so a server is reachable;
    -p forwards another host port to it). A throwaway upper dir: nothing of the run is
    kept. Ctrl-C / SIGTERM stop it; everything is unmounted. Exits with its status."""
    if watch:
        _run_watch(ctx, name, publish, envs, network, specs, sets, command)
        return
    ws = workspace(ctx)
    sys.exit(_run_image(ws, name, publish, envs, network, command))


def _run_watch(
    ctx: click.Context,
    name: str,
    publish: Sequence[str],
    envs: Sequence[str],
    network: str,
    specs: Path,
    sets: Sequence[str],
    command: Sequence[str],
) -> None:
    """``run --watch``: build, run, and on every new image of NAME restart the run."""
    from pipeline.build.watch import Restarter
    from pipeline.cli.fleet import builder, watch_builds
    from pipeline.errors import BuildFailed

    ws = workspace(ctx, specs, sets)
    once = builder([name], progress="quiet")
    graph, result = once(ws)
    if result.failures:
        raise BuildFailed(result.failures)
    image_id = ws.select([name])[0]
    current = [result.images[image_id].manifest]
    runner = Restarter(
        lambda started: _run_image(ws, image_id, publish, envs, network, command, started)
    )

    def on_result(new: BuildResult) -> None:
        image = new.images.get(image_id)
        if image is not None and image.manifest != current[0]:
            current[0] = image.manifest
            click.echo(f"watch: restarting {image_id} on {image.manifest}", err=True)
            runner.restart()

    runner.start()
    try:
        watch_builds(specs, ws, graph, once, on_result)
    finally:
        runner.stop()


def _run_image(
    ws: Workspace,
    name: str,
    publish: Sequence[str],
    envs: Sequence[str],
    network: str,
    command: Sequence[str],
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> int:
    """Run stored image ``name`` until it ends; its exit status. With ``on_start``
    (a thread other than the main one), signals are not forwarded: the caller stops it
    through the process it is handed."""
    from pipeline.oci.config import ImageConfig
    from pipeline.sandbox import linux as sandbox
    from pipeline.sandbox.api import RunSpec
    from pipeline.sandbox.portforward import Forwarder, PortMap

    store = ws.store
    image = ws.image(name)
    config = ImageConfig.from_oci(image.config.get("config") or {})
    env = dict(config.env)
    env.update(parse_overrides(envs, "-e"))
    argv = [*(config.entrypoint or ()), *(command or config.cmd or ())]
    if not argv:
        raise UsageError(f"{name}: the image has no entrypoint or cmd; give a command after --")
    maps = [PortMap.parse(p) for p in publish]
    spec = RunSpec(
        argv=tuple(argv),
        env=tuple(env.items()),
        workdir=config.workdir or "/",
        user=config.user,
        network=network,
        hostname=name.removeprefix("app.").split(":")[0][:63] or "pipeline",
    )
    forwarders = []
    with store.gc_lock(), store.staging() as staging:
        upper, work = staging.path / "upper", staging.path / "work"
        upper.mkdir()
        work.mkdir()
        lowers = [store.layer_path(d) for d, _ in reversed(image.layers)]
        try:
            forwarders = [Forwarder(m) for m in maps]
            return sandbox.run_interactive(
                lowers, upper, work, spec, forward_signals=on_start is None, on_start=on_start
            )
        finally:
            for f in forwarders:
                f.close()
