"""The ``pipeline`` command group and its entry point, the one error path.

Every command ends with exit status 0, or one line on stderr (control and bidi
characters escaped) and its status: 2 for usage and spec errors, 1 for other errors
(a failed build prints one line per failed step), 130 after SIGINT, 143 after
SIGTERM. Anything unexpected is ``internal error: <what> (details: <file>)`` with
exit status 70 (EX_SOFTWARE); the traceback goes to that file only
(``<store>/logs/``, else the temp directory).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType

import click

from pipeline.cli import bake, ci, container, fleet, images, maintenance, remote
from pipeline.cli.common import Ctx
from pipeline.errors import BuildFailed, PipelineError, UsageError, escape

EX_SOFTWARE = 70
_STORE: list[Path] = []  # the store of this invocation, once known


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    type=click.Path(path_type=Path, readable=False),
    envvar="PIPELINE_STORE",
    default=None,
    help="Store directory (default: $PIPELINE_STORE or ~/.cache/pipeline). A store "
    "given so must exist (or be an empty directory) unless --init.",
)
@click.option(
    "--init",
    is_flag=True,
    help="Create the --store / $PIPELINE_STORE directory if it does not exist.",
)
@click.version_option(package_name="pipeline")
@click.pass_context
def main(ctx: click.Context, store: Path | None, init: bool) -> None:
    """Build a fleet of container images from declarative HCL specs, without a daemon."""
    from pipeline.store import default_store_path

    if store is not None and not init:
        check_store(store)
    ctx.obj = Ctx(store or default_store_path())
    _STORE[:] = [ctx.obj.store_path]


def check_store(path: Path) -> None:
    """UsageError unless ``path`` is a store or an empty directory: a mistyped
    ``--store`` must not quietly start a new, empty store. (The default store, under
    the user's cache directory, is made on first use.)"""
    from pipeline.storedb import INDEX

    try:
        if (path / INDEX).exists() or (path.is_dir() and not any(path.iterdir())):
            return
    except OSError:
        return  # unreadable: the store reports it in its own words
    if path.is_dir():
        raise UsageError(
            f"{path}: not a pipeline store (no {INDEX}, and not empty); check --store or "
            "PIPELINE_STORE"
        )
    if path.exists():
        return  # a file: the store reports it in its own words
    raise UsageError(
        f"{path}: no such store; check --store or PIPELINE_STORE, or add --init to create "
        "it (pipeline --init --store DIR ...)"
    )


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
    images.tag,
    images.rmi,
    images.untag,
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
    maintenance.fsck,
):
    main.add_command(command)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanups run and the build is
    recorded (exit 143)."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """First SIGINT/SIGTERM: say so at once and stop the command by raising in the main
    thread (a build then kills its running steps and cleans up). Later ones while it
    stops are ignored, so a second Ctrl-C cannot interrupt the cleanup."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.write(2, b"stopping...\n")
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


def _say(text: str) -> None:
    with contextlib.suppress(OSError):  # stderr gone too: the exit status is what is left
        click.echo(text, err=True)


def _log_internal(exc: BaseException) -> str:
    """Write the traceback to a new file under <store>/logs (else the temp dir);
    the file's path, or why none could be written."""
    text = "".join(traceback.format_exception(exc))
    name = f"internal-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    dirs: list[Path] = []
    if _STORE:
        dirs.append(_STORE[0] / "logs")
    dirs.append(Path(tempfile.gettempdir()) / f"pipeline-logs-{os.getuid()}")
    last = ""
    for folder in dirs:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = folder / name
            with open(path, "x", encoding="utf-8", errors="backslashreplace") as f:
                f.write(f"pipeline {' '.join(sys.argv[1:])}\n\n{text}")
            return str(path)
        except OSError as err:
            last = f"could not be written: {err.strerror}"
    return last


def _usage_line(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "pipeline"
    hint = ""
    if isinstance(exc, click.UsageError) and ctx is not None:
        hint = f" (see '{ctx.command_path} --help')"
    return escape(f"{where}: {exc.format_message()}{hint}")


def run() -> None:
    """Entry point: the one error path (see the module docstring)."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    code = 0
    try:
        result = main(prog_name="pipeline", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except click.exceptions.Abort:
        _say("interrupted")
        code = 130
    except click.ClickException as exc:
        no_args = getattr(click.exceptions, "NoArgsIsHelpError", ())
        ctx = getattr(exc, "ctx", None)
        _say(ctx.get_help() if isinstance(exc, no_args) and ctx else _usage_line(exc))
        code = 2
    except PipelineError as exc:
        _say(escape(str(exc), keep_newlines=isinstance(exc, BuildFailed)))
        code = exc.exit_code
    except KeyboardInterrupt:
        _say("interrupted")
        code = 130
    except Terminated:
        _say("terminated")
        code = 143
    except BrokenPipeError:
        # the reader went away (``pipeline plan | head``): not an error of ours
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    except Exception as exc:
        what = escape(f"{type(exc).__name__}: {exc}")
        what = what if len(what) <= 300 else what[:300] + "..."
        _say(f"internal error: {what} (details: {_log_internal(exc)})")
        code = EX_SOFTWARE
    sys.exit(code)


if __name__ == "__main__":
    run()
