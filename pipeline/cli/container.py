"""``pipeline run``: an image's entrypoint in the sandbox, like ``docker run``.

Options come before the image name, as with docker; everything after it (a leading
``--`` dropped) is the command. An option docker has and we do not (``-d``,
``--privileged``, ...) is a usage error, never taken for the image name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import click

from pipeline.cli.common import workspace
from pipeline.errors import UsageError
from pipeline.sandbox.api import BindMount

NETWORKS = {"host": "default", "default": "default", "none": "none"}
# The sandbox's own /proc and /sys stay its own: a volume never covers them.
RESERVED_TARGETS = ("/proc", "/sys")
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@click.command(
    "run",
    context_settings={"allow_interspersed_args": False},
    short_help="Run an image in the sandbox (docker run's common flags).",
)
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin attached.")
@click.option("-t", "--tty", is_flag=True, help="Give the command a terminal (a real pty).")
@click.option("--rm", is_flag=True, help="Accepted; always so: nothing of a run is kept.")
@click.option("-e", "--env", "envs", multiple=True, metavar="NAME[=VALUE]")
@click.option("--env-file", "env_files", multiple=True, type=click.Path(), metavar="FILE")
@click.option("-p", "--publish", multiple=True, metavar="[ADDR:]HOST_PORT:PORT")
@click.option("-v", "--volume", "volumes", multiple=True, metavar="HOST:CTR[:ro|rw]")
@click.option("-w", "--workdir", default=None, metavar="DIR")
@click.option("-u", "--user", default=None, metavar="USER[:GROUP]")
@click.option("--entrypoint", default=None, metavar="CMD")
@click.option("--name", default=None, help="The run's name (also its hostname).")
@click.option("--hostname", default=None)
@click.option("--network", type=click.Choice(sorted(NETWORKS)), default="host")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_(
    ctx: click.Context,
    interactive: bool,
    tty: bool,
    rm: bool,
    envs: Sequence[str],
    env_files: Sequence[str],
    publish: Sequence[str],
    volumes: Sequence[str],
    workdir: str | None,
    user: str | None,
    entrypoint: str | None,
    name: str | None,
    hostname: str | None,
    network: str,
    image: str,
    command: Sequence[str],
) -> None:
    """Run IMAGE's entrypoint (or COMMAND) in the sandbox, as `docker run --rm` does: a
    throwaway upper dir, so nothing of the run is kept. The host's network by default
    (a server is reachable; -p forwards another host port to it); --network none gives
    only a loopback. -v binds a host path (it must exist). Ctrl-C / SIGTERM stop it
    (with -t, Ctrl-C goes to the command's terminal); everything is unmounted. Exits
    with the command's status."""
    from pipeline.oci.config import ImageConfig
    from pipeline.sandbox import linux as sandbox
    from pipeline.sandbox.api import RunSpec
    from pipeline.sandbox.portforward import Forwarder, PortMap

    del rm  # the default, and the only way
    if command[:1] == ("--",):
        command = command[1:]
    elif command and command[0].split("=")[0] in _option_names(ctx):
        click.echo(
            f"note: {command[0]} comes after the image name, so it goes to the command;"
            f" options come before IMAGE (pipeline run {command[0]} ... {image})",
            err=True,
        )
    if interactive and tty and not os.isatty(0):
        raise UsageError("run: -it: the input device is not a terminal (drop -t)")
    maps = [PortMap.parse(p) for p in publish]
    if maps and NETWORKS[network] == "none":
        raise UsageError("run: -p needs the host network (not --network none)")
    binds = tuple(parse_volume(v, Path.cwd()) for v in volumes)
    if name is not None and not valid_name(name):
        raise UsageError(f"run: --name {name!r}: use letters, digits, '_', '.', '-'")
    ws = workspace(ctx)
    store = ws.store
    found = ws.image(image)
    config = ImageConfig.from_oci(found.config.get("config") or {})
    env = dict(config.env)
    for path in env_files:
        env.update(read_env_file(Path(path), os.environ))
    env = apply_env_options(env, envs, os.environ)
    argv = command_line(config.entrypoint, config.cmd, entrypoint, command)
    if not argv:
        raise UsageError(f"{image}: the image has no entrypoint or cmd; give a command after it")
    spec = RunSpec(
        argv=tuple(argv),
        env=tuple(env.items()),
        workdir=workdir or config.workdir or "/",
        user=config.user if user is None else user,
        network=NETWORKS[network],
        hostname=(hostname or name or image.removeprefix("app.").split(":")[0])[:63] or "pipeline",
        binds=binds,
        tty=tty,
    )
    if not spec.workdir.startswith("/"):
        raise UsageError(f"run: -w {spec.workdir!r}: the working directory must be absolute")
    forwarders = []
    with store.gc_lock(), store.staging() as staging:
        upper, work = staging.path / "upper", staging.path / "work"
        upper.mkdir()
        work.mkdir()
        lowers = [store.layer_path(d) for d, _ in reversed(found.layers)]
        try:
            forwarders = [Forwarder(m) for m in maps]
            code = sandbox.run_interactive(lowers, upper, work, spec, stdin=interactive)
        finally:
            for f in forwarders:
                f.close()
    sys.exit(code)


def _option_names(ctx: click.Context) -> set[str]:
    return {name for param in ctx.command.params for name in getattr(param, "opts", ())}


def command_line(
    entrypoint: Sequence[str] | None,
    cmd: Sequence[str] | None,
    override: str | None,
    command: Sequence[str],
) -> list[str]:
    """What runs, by docker's rules: the image's entrypoint + (COMMAND or its cmd);
    ``--entrypoint X`` replaces the entrypoint and drops the image's cmd, ``""`` clears it."""
    if override is not None:
        return [*([override] if override else []), *command]
    return [*(entrypoint or ()), *(command or cmd or ())]


def apply_env_options(
    env: Mapping[str, str], options: Sequence[str], host: Mapping[str, str]
) -> dict[str, str]:
    """``-e NAME=VALUE`` sets; ``-e NAME`` takes the caller's value, or unsets NAME when
    the caller has none (docker's rule)."""
    out = dict(env)
    for option in options:
        name, sep, value = option.partition("=")
        if not name or "\x00" in option:
            raise UsageError(f"run: -e {option!r}: expected NAME=VALUE or NAME")
        if sep:
            out[name] = value
        elif name in host:
            out[name] = host[name]
        else:
            out.pop(name, None)
    return out


def read_env_file(path: Path, host: Mapping[str, str]) -> dict[str, str]:
    """An ``--env-file``: ``NAME=VALUE`` lines (the value verbatim, no quotes removed,
    as docker reads it), ``NAME`` alone for the caller's value, blank lines and ``#``
    comments skipped. Errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"{path}: --env-file: {why}") from None
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        if not name or any(c.isspace() for c in name) or "\x00" in line:
            raise UsageError(f"{path}:{number}: expected NAME=VALUE or NAME, got {line!r}")
        if sep:
            out[name] = value
        elif name in host:
            out[name] = host[name]
    return out


def parse_volume(text: str, cwd: Path) -> BindMount:
    """``-v HOST:CTR[:ro|rw]`` as a :class:`~pipeline.sandbox.api.BindMount`. HOST is a
    path (absolute, or relative starting with ``.``); named volumes do not exist here.
    HOST must exist (docker would create a missing dir on the host: we never do)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"run: -v {text!r}: expected HOST:CTR[:ro|rw]")
    host, target = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    if any(m not in ("ro", "rw") for m in modes) or len(set(modes)) > 1:
        raise UsageError(f"run: -v {text!r}: the options are ro or rw")
    if not host.startswith(("/", ".")):
        raise UsageError(f"run: -v {text!r}: {host!r} is not a path (no named volumes here)")
    source = (cwd / host).resolve() if not host.startswith("/") else Path(host)
    if not source.exists():
        raise UsageError(f"run: -v {text!r}: {source}: no such file or directory")
    normal = os.path.normpath(target)
    if not target.startswith("/") or normal == "/":
        raise UsageError(f"run: -v {text!r}: {target!r} must be an absolute path below /")
    if any(normal == r or normal.startswith(r + "/") for r in RESERVED_TARGETS):
        raise UsageError(f"run: -v {text!r}: the sandbox's {normal} cannot be covered")
    return BindMount(source, normal, readonly=modes == ["ro"])


def valid_name(name: str) -> bool:
    """Docker's container name rule: ``[a-zA-Z0-9][a-zA-Z0-9_.-]*``."""
    return bool(name) and name[0].isalnum() and name.isascii() and set(name) <= NAME_CHARS
