"""The ``pipeline`` command group and its entry point: every PipelineError becomes one
line on stderr and its exit status; nothing else is printed for an error."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import click

from pipeline.cli import bake, ci, container, fleet, images, remote
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
    ci.why,
    ci.affected,
    ci.verify,
    ci.bench,
    ci.report_,
    bake.bake,
):
    main.add_command(command)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt (exit 143)."""


def _on_signal(signum: int, _frame: object) -> None:
    """First SIGINT/SIGTERM: say so at once and stop the command by raising in the main
    thread (a build then kills its running steps and cleans up). Later ones while it
    stops are ignored, so a second Ctrl-C cannot interrupt the cleanup."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.write(2, b"stopping...\n")
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def run() -> None:
    """Entry point with one-line errors instead of tracebacks; exit 130 on SIGINT and 143
    on SIGTERM."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        main(standalone_mode=False)
    except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt into Abort
        if isinstance(exc.__cause__, Terminated):
            click.echo("stopped (SIGTERM)", err=True)
            sys.exit(143)
        click.echo("stopped (interrupted)", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except PipelineError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except Terminated:
        click.echo("stopped (SIGTERM)", err=True)
        sys.exit(143)
    except KeyboardInterrupt:
        click.echo("stopped (interrupted)", err=True)
        sys.exit(130)


if __name__ == "__main__":
    run()
