"""``pipeline run``: an image's entrypoint in the sandbox, like ``docker run``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from pipeline.build.workspace import parse_overrides
from pipeline.cli.common import workspace
from pipeline.errors import UsageError


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.option("-p", "--publish", multiple=True, metavar="[ADDR:]HOST_PORT:PORT")
@click.option("-e", "--env", "envs", multiple=True, metavar="NAME=VALUE")
@click.option("--network", type=click.Choice(["default", "none"]), default="default")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_(
    ctx: click.Context,
    name: str,
    publish: Sequence[str],
    envs: Sequence[str],
    network: str,
    command: Sequence[str],
) -> None:
    """Run an image's entrypoint in the sandbox (host network, so a server is reachable;
    -p forwards another host port to it). A throwaway upper dir: nothing of the run is
    kept. Ctrl-C / SIGTERM stop it; everything is unmounted. Exits with its status."""
    from pipeline.oci.config import ImageConfig
    from pipeline.sandbox import linux as sandbox
    from pipeline.sandbox.api import RunSpec
    from pipeline.sandbox.portforward import Forwarder, PortMap

    ws = workspace(ctx)
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
            code = sandbox.run_interactive(lowers, upper, work, spec)
        finally:
            for f in forwarders:
                f.close()
    sys.exit(code)
