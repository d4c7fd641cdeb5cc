"""The ``pipeline`` command group and its entry point: every PipelineError becomes one
line on stderr and its exit status; nothing else is printed for an error."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.cli import bake, container, fleet, images, remote
from pipeline.cli.common import Ctx
from pipeline.errors import PipelineError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    type=click.Path(path_type=Path),
    envvar="PIPELINE_STORE",
    default=None,
    help="Store directory (default: $PIPELINE_STORE or ~/.cache/pipeline).",
)
@click.version_option(package_name="pipeline")
@click.pass_context
def main(ctx: click.Context, store: Path | None) -> None:
    """Build a fleet of container images from declarative HCL specs, without a daemon."""
    from pipeline.store import default_store_path

    ctx.obj = Ctx(store or default_store_path())


for command in (
    fleet.validate,
    fleet.plan,
    fleet.build_all,
    fleet.build,
    images.images,
    images.history,
    images.inspect,
    images.export,
    images.import_,
    images.du,
    images.prune,
    images.bootstrap,
    container.run_,
    remote.push,
    remote.pull,
    bake.bake,
):
    main.add_command(command)


def run() -> None:
    """Entry point with one-line errors instead of tracebacks."""
    try:
        main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except PipelineError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    run()
