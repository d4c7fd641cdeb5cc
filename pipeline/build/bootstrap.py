"""Making base images locally, with no image registry: Debian via mmdebstrap, and a
tiny busybox base from Debian's busybox-static. Spawns only those two tools' work."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import PipelineError, UsageError

APT_CLEAN = 'APT::Keep-Downloaded-Packages "false";'
DEBIAN_SUITES = ("bookworm", "trixie", "bullseye", "sid", "stable", "testing", "unstable")


def parse_name(name: str) -> tuple[str, str]:
    """``"debian:bookworm"`` -> ("debian", "bookworm"); a missing tag means "latest"."""
    repo, _, tag = name.partition(":")
    return repo, tag or "latest"


def rootfs_tar(
    name: str,
    out: Path,
    include: Sequence[str] = (),
    epoch: int = 0,
    apt_cache: Path | None = None,
) -> None:
    """Write a root filesystem tarball for ``name`` to ``out``.

    ``debian:SUITE`` runs mmdebstrap (minbase variant, root mode) with
    SOURCE_DATE_EPOCH=``epoch`` so the result is reproducible for a given mirror state;
    with ``apt_cache`` (the store's cache dir that ``apt`` steps mount at /var/cache/apt)
    the .debs found in its ``archives`` are used instead of downloading them again and
    the ones downloaded are added there; none of them is in the tarball, whose
    /var/cache/apt and /var/lib/apt/lists are empty. The image's apt drops what it
    downloads after installing (``APT::Keep-Downloaded-Packages "false"``, the job of
    docker-clean in Docker's debian images), so plain ``RUN apt-get install`` layers carry
    no .debs either; ``apt`` steps keep them in their cache mount instead.
    ``busybox:TAG`` needs only /bin/busybox. Raises UsageError for other names and
    PipelineError (with mmdebstrap's last output lines) when the tool fails.
    """
    repo, tag = parse_name(name)
    if repo in ("busybox", "debian") and os.geteuid() != 0:
        raise PipelineError(
            f"{name}: bootstrap needs root (a base image's files are owned by root); run it "
            "as root, or `pipeline import` a base made elsewhere"
        )
    if repo == "busybox":
        from pipeline.build import bases

        bases.busybox_rootfs_tar(out, epoch)
        return
    if repo != "debian":
        raise UsageError(f"{name}: bootstrap makes debian:SUITE or busybox:TAG images")
    suite = "bookworm" if tag == "latest" else tag
    if suite not in DEBIAN_SUITES:
        raise UsageError(
            f"{name}: unknown Debian suite {suite!r} (one of {', '.join(DEBIAN_SUITES)})"
        )
    tool = shutil.which("mmdebstrap")
    if tool is None:
        raise PipelineError(f"{name}: mmdebstrap is not installed (apt-get install mmdebstrap)")
    argv = [
        tool,
        "--variant=minbase",
        "--mode=root",
        "--format=tar",
        '--aptopt=Acquire::Retries "3"',
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        # Reproducible RUN steps on this base: apt and dpkg keep no logs with times
        # in them (dpkg.cfg's log line points at /dev/null), apt no binary package caches
        # (as Docker's debian images), and ldconfig cannot write its aux-cache (inode
        # numbers and ctimes): /var/cache/ldconfig is a file, and ldconfig then skips
        # saving it without an error. `pipeline verify` checks the result.
        '--aptopt=Dir::Log::Terminal "/dev/null"',
        '--aptopt=Dir::Log::History "/dev/null"',
        '--aptopt=Dir::Cache::pkgcache ""',
        '--aptopt=Dir::Cache::srcpkgcache ""',
        '--customize-hook=rm -rf "$1/var/cache/ldconfig" && : > "$1/var/cache/ldconfig"'
        " && sed -i 's|^log .*|log /dev/null|' \"$1/etc/dpkg/dpkg.cfg\""
        f' && echo {shlex.quote(APT_CLEAN)} > "$1/etc/apt/apt.conf.d/90pipeline-clean"',
    ]
    if apt_cache is not None:
        debs = apt_cache / "archives"
        debs.mkdir(parents=True, exist_ok=True)
        here = shlex.quote(str(debs))
        argv += [
            "--skip=essential/unlink",
            '--setup-hook=mkdir -p "$1/var/cache/apt/archives" && find'
            f' {here} -maxdepth 1 -name "*.deb" -exec cp -t "$1/var/cache/apt/archives" {{}} +',
            f'--customize-hook=find "$1/var/cache/apt/archives" -maxdepth 1 -name "*.deb"'
            f' -exec cp -n -t {here} {{}} + && rm -f "$1"/var/cache/apt/archives/*.deb',
        ]
    if include:
        argv.append("--include=" + ",".join(include))
    argv += [suite, str(out)]
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise PipelineError(f"{name}: mmdebstrap failed (exit {proc.returncode}): {tail}")
