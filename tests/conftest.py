"""Shared fixtures: a real busybox base image and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deterministic busybox rootfs tarball (from Debian's busybox-static)."""
    from pipeline.build import bases

    out = tmp_path_factory.mktemp("busybox") / "busybox.tar"
    bases.busybox_rootfs_tar(out)
    return out


Cli = Callable[..., subprocess.CompletedProcess[str]]


def make_cli(store: Path, cwd: Path) -> Cli:
    def cli(
        *args: str, check: bool = True, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        if not store.exists():  # a store given by PIPELINE_STORE must exist (or --init)
            store.mkdir(mode=0o700, parents=True)
        full_env = dict(os.environ, PIPELINE_STORE=str(store), **(env or {}))
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"pipeline {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    return cli


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Where the test's store goes (``cli`` makes the directory: a store given with
    --store or PIPELINE_STORE must exist; see ``pipeline --init``)."""
    return tmp_path / "store"


@pytest.fixture
def cli(tmp_path: Path, store_path: Path) -> Cli:
    """Run `python -m pipeline ...` with a private store, from tmp_path."""
    return make_cli(store_path, tmp_path)


@pytest.fixture
def busybox_store(cli: Cli, busybox_tar: Path) -> Cli:
    """The private store with busybox:latest imported."""
    cli("import", str(busybox_tar), "--tag", "busybox:latest")
    return cli
