"""End to end: ``pipeline bake`` on a bake project (tests/cases/bake-e2e) with the real
sandbox and the busybox base; the images compared file by file with what BuildKit
(``docker build`` on a private dockerd) builds from the same Dockerfiles, both
unpacked by umoci; ``--load`` checked against that dockerd."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, make_cli
from tests.dockerd import Dockerd, available, private_dockerd

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).parent / "cases" / "bake-e2e"
TARGETS = ("base", "web", "svc-api", "svc-worker", "tools")
# Known differences, each one listed in docs/bake.md: BuildKit's WORKDIR creates the
# directory in a layer; ours records it in the image config only (Dockerfile fidelity).
KNOWN = {"base": {"/srv"}}


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path below ``root``: kind, permission bits, owner and content (not times)."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = "/" + str(path.relative_to(root))
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path), st.st_uid, st.st_gid)
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[rel] = ("file", oct(mode), st.st_uid, st.st_gid, digest, st.st_nlink > 1)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", oct(mode), st.st_uid, st.st_gid)
            else:
                out[rel] = ("other", oct(st.st_mode), st.st_uid, st.st_gid, st.st_rdev)
    return out


def layout_config(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest).read_text())
    config_digest = manifest["config"]["digest"].split(":", 1)[1]
    config: dict[str, Any] = json.loads((layout / "blobs" / "sha256" / config_digest).read_text())
    return config


def unpack(layout: Path, ref: str, bundle: Path) -> Path:
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{ref}", str(bundle)],
        check=True,
        capture_output=True,
    )
    return bundle / "rootfs"


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    c = config.get("config") or {}
    keys = ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "Labels", "ExposedPorts")
    return {k: c.get(k) or None for k in keys}


def buildkit_build(docker: Dockerd, project: Path, name: str, t: dict[str, Any]) -> str:
    """``docker build`` of one resolved target (from ``pipeline bake --print``)."""
    ref = f"buildkit/{name}:latest"
    context = project / t["context"]
    argv = ["build", "--network", "none", "-q", "-f", str(context / t["dockerfile"]), "-t", ref]
    if t.get("target"):
        argv += ["--target", t["target"]]
    for key, value in sorted((t.get("args") or {}).items()):
        argv += ["--build-arg", f"{key}={value}"]
    for label, value in sorted((t.get("labels") or {}).items()):
        argv += ["--label", f"{label}={value}"]
    for ctx_name, value in (t.get("contexts") or {}).items():
        assert value.startswith("target:"), value  # the classic builder has no --build-context
        docker.docker("tag", f"buildkit/{value[7:]}:latest", f"{ctx_name}:latest")
    docker.docker(*argv, str(context))
    return ref


def test_bake_builds_what_buildkit_builds(
    busybox_tar: Path, store_path: Path, tmp_path: Path
) -> None:
    why = available()
    if why:
        pytest.skip(why)
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    cli: Cli = make_cli(store_path, project)
    cli("import", str(busybox_tar), "--tag", "busybox:latest")
    printed = json.loads(cli("bake", "--print", "base", "web", "svc", "tools").stdout)
    assert set(printed["target"]) == set(TARGETS)
    assert printed["target"]["web"]["args"] == {"CHANNEL": "beta", "PORT": "8080", "SERVICE": "web"}
    assert printed["group"]["svc"]["targets"] == ["svc-api", "svc-worker"]

    build = cli("bake", "--progress", "plain")
    assert " 0 failed" in build.stdout
    assert (project / "out" / "web.tar").is_file()  # the override file's output
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{project / 'out' / 'web.tar'}"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert json.loads(inspect.stdout)["Labels"]["org.opencontainers.image.vendor"] == "pipeline e2e"
    names = cli("images").stdout
    for tag in (
        "localhost:5000/e2e/web:1.0",
        "localhost:5000/e2e/api:1.0",
        "localhost:5000/e2e/tools:1.0",
    ):
        assert tag in names
    again = cli("bake", "--progress", "plain")
    assert "nodes: 0 built" in again.stdout  # everything is cached the second time
    fresh = cli("bake", "--progress", "plain", "--no-cache", "tools")
    assert " 0 cached" in fresh.stdout
    assert "app.base" not in cli("images").stdout  # linked only: built, not exported
    cli("bake", "base")

    with private_dockerd(tmp_path / "dockerd") as docker:
        archive = tmp_path / "busybox-docker.tar"
        cli("export", "busybox:latest", "--format", "docker-archive", "-o", str(archive))
        docker.docker("load", "-i", str(archive))
        order = ["base", "web", "svc-api", "svc-worker", "tools"]
        for name in order:
            t = printed["target"][name]
            ref = buildkit_build(docker, project, name, t)
            theirs_tar = tmp_path / f"{name}.docker.tar"
            docker.docker("save", "-o", str(theirs_tar), ref)
            theirs = tmp_path / f"{name}.buildkit"
            subprocess.run(
                ["skopeo", "copy", f"docker-archive:{theirs_tar}", f"oci:{theirs}:x"],
                check=True,
                capture_output=True,
            )
            ours = tmp_path / f"{name}.pipeline"
            cli("export", f"app.{name}", "--format", "oci", "-o", str(ours))
            our_ref = json.loads((ours / "index.json").read_text())["manifests"][0]["annotations"][
                "org.opencontainers.image.ref.name"
            ]
            our_root = unpack(ours, our_ref, tmp_path / f"{name}.ours")
            their_root = unpack(theirs, "x", tmp_path / f"{name}.theirs")
            a, b = tree(our_root), tree(their_root)
            assert "/bin/sh" in a  # a real rootfs
            assert ("/bin/vi" in a) == (name == "tools")  # base's whiteout, in every user
            known = KNOWN.get(name, set())
            only_ours = sorted(set(a) - set(b) - known)
            only_theirs = sorted(set(b) - set(a) - known)
            differ = sorted(p for p in set(a) & set(b) if a[p] != b[p])
            assert (only_ours, only_theirs, differ) == ([], [], []), (
                name,
                only_ours[:10],
                only_theirs[:10],
                [(p, a[p], b[p]) for p in differ[:10]],
            )
            assert comparable(layout_config(ours)) == comparable(layout_config(theirs)), name

        web = tree(tmp_path / "web.ours" / "rootfs")
        assert web["/srv/web/run.sh"][1] == "0o755"
        banner = (tmp_path / "web.ours" / "rootfs" / "srv" / "web" / "banner").read_text()
        assert banner == "web on 8080 (beta)\n"  # the override file's CHANNEL
        env = docker.env()
        load = make_cli(store_path, project)("bake", "--load", "web", env=env)
        assert "web: docker docker" in load.stdout
        our_config = layout_config(tmp_path / "web.pipeline")
        loaded = json.loads(docker.docker("image", "inspect", "localhost:5000/e2e/web:1.0"))[0]
        assert loaded["RootFS"]["Layers"] == our_config["rootfs"]["diff_ids"]
