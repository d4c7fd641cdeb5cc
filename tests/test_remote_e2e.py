"""End to end with a real registry: build a small fleet on the busybox base, push it,
check it with skopeo, pull it into fresh stores, build on a registry base pinned by
pipeline.lock, share layers through the registry-backed remote cache, and see faults
and auth fail clearly without leaving anything in the store. Only 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cli, make_cli
from tests.test_build_e2e import FLEET, build, write_fleet
from tests.test_registry_support import (
    PASSWORD,
    USER,
    Fault,
    Proxy,
    Registry,
    no_secret_in,
    proxy_fixture,  # noqa: F401
    registry_fixture,  # noqa: F401
    start_registry,
)

pytestmark = pytest.mark.slow

FAST_RETRIES = {"PIPELINE_REGISTRY_RETRIES": "2"}


@pytest.fixture(autouse=True)
def _needs_root_and_tools() -> None:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (CI runs as root)")
    for tool in ("skopeo", "busybox", "htpasswd"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run bash .ci/setup")


@dataclass
class Pushed:
    """A fleet built (with --cache-to) and pushed once, shared by this module's tests."""

    cli: Cli
    root: Path
    host: str
    report: dict
    push_output: str
    cold_seconds: float


def _fleet(host: str) -> str:
    return FLEET.replace('"acme/', f'"{host}/acme/')


@pytest.fixture(scope="module")
def pushed(
    registry: Registry, busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory
) -> Pushed:
    root = tmp_path_factory.mktemp("pushed")
    cli = make_cli(root / "store", root)
    cli("import", str(busybox_tar), "--tag", "busybox:latest")
    write_fleet(root, _fleet(registry.host))
    started = time.monotonic()
    report = build(cli, root, "--cache-to", f"{registry.host}/cache")
    cold = time.monotonic() - started
    out = cli("push", "--all").stdout
    out += cli("push", "three", "--to", f"{registry.host}/acme/three:latest").stdout
    return Pushed(cli, root, registry.host, report, out, cold)


def _line(output: str, target: str) -> dict[str, int]:
    line = next(x for x in output.splitlines() if x.startswith(target + ":"))
    m = re.search(r"(\d+) uploaded.*?(\d+) mounted, (\d+) already there", line)
    assert m, line
    return dict(zip(("uploaded", "mounted", "present"), map(int, m.groups()), strict=True))


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_push_is_a_real_image_with_equal_digests(pushed: Pushed, tmp_path: Path) -> None:
    host = pushed.host
    one = _line(pushed.push_output, f"{host}/acme/one:1")
    two = _line(pushed.push_output, f"{host}/acme/two:1")
    three = _line(pushed.push_output, f"{host}/acme/three:latest")
    # the layers were already in the cache repository: mounted, not uploaded again
    assert one["uploaded"] <= 2 and one["mounted"] >= 3
    # busybox, base, deps_a are in acme/one already: two mounts them
    assert two["mounted"] + two["present"] >= 3
    assert three["mounted"] + three["present"] >= 2
    for app, ref in (("one", "acme/one:1"), ("three", "acme/three:latest")):
        expected = pushed.report["images"][f"app.{app}"]["manifest"]
        info = json.loads(_skopeo("inspect", "--tls-verify=false", f"docker://{host}/{ref}").stdout)
        assert info["Digest"] == expected
        stored = json.loads(pushed.cli("inspect", app).stdout)
        assert info["Layers"] == [layer["diff_id"] for layer in stored["layers"]]
        layout = tmp_path / f"{app}-oci"
        _skopeo(
            "copy",
            "--src-tls-verify=false",
            "--preserve-digests",
            "--dest-oci-accept-uncompressed-layers",
            f"docker://{host}/{ref}",
            f"oci:{layout}:x",
        )
        index = json.loads((layout / "index.json").read_text())
        assert index["manifests"][0]["digest"] == expected
        for layer in stored["layers"]:
            assert (layout / "blobs" / "sha256" / layer["diff_id"].split(":")[1]).exists()


def test_second_push_uploads_nothing(pushed: Pushed, proxy: Proxy) -> None:
    target = f"{proxy.host}/acme/one:1"
    pushed.cli("push", "one", "--to", target)  # first time through this registry name
    proxy.reset()
    out = pushed.cli("push", "one", "--to", target).stdout
    assert proxy.blob_uploads() == []
    assert _line(out, target)["uploaded"] == 0
    assert proxy.count("HEAD", "/blobs/") == 5  # 4 layers + config, nothing else sent
    assert proxy.count("PUT", "/manifests/") == 1


def test_pull_into_a_fresh_store_then_build_on_a_pinned_registry_base(
    pushed: Pushed, proxy: Proxy, busybox_tar: Path, tmp_path: Path
) -> None:
    cli = make_cli(tmp_path / "store", tmp_path)
    ref = f"{proxy.host}/acme/one:1"
    out = cli("pull", ref).stdout
    expected = pushed.report["images"]["app.one"]["manifest"]
    assert f"{ref}: {expected}" in out and "4 layers fetched" in out
    assert json.loads(cli("inspect", ref).stdout)["manifest"] == expected
    assert list((tmp_path / "store" / "tmp").iterdir()) == []
    # a second pull transfers no layer
    proxy.reset()
    assert "0 layers fetched" in cli("pull", ref).stdout
    assert proxy.count("GET", "/blobs/") == 0

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "app.hcl").write_text(
        f"""
image "four" {{
  from = "{proxy.host}/acme/two:1"
  run {{ command = "cat /srv/data.txt | wc -l > /count" }}
  tags = ["acme/four:1"]
}}
"""
    )
    proxy.reset()
    first = build(cli, tmp_path)
    assert first["totals"]["built"] == 1
    lock = json.loads((specs / "pipeline.lock").read_text())
    assert lock["bases"] == {
        f"{proxy.host}/acme/two:1": pushed.report["images"]["app.two"]["manifest"]
    }
    assert proxy.count("GET", "/manifests/1") == 1
    # pinned and in the store: the next build does not touch the registry at all
    proxy.reset()
    again = build(cli, tmp_path)
    assert again["totals"]["built"] == 0 and proxy.requests == []
    # --update resolves the tag again (one manifest request) and keeps the pin
    again = build(cli, tmp_path, "--update")
    assert proxy.count("GET", "/manifests/1") == 1 and proxy.count("GET", "/blobs/") == 0
    assert json.loads((specs / "pipeline.lock").read_text()) == lock


def _store_snapshot(store: Path) -> tuple[list[str], list[str], list[str]]:
    return (
        sorted(p.name for p in (store / "layers").iterdir()),
        sorted(p.name for p in (store / "blobs" / "sha256").iterdir()),
        sorted(p.name for p in (store / "tmp").iterdir()),
    )


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault("GET", "/blobs/sha256:", kind="truncate", times=None), "truncated"),
        (Fault("GET", "/blobs/sha256:", kind="corrupt", times=None), "digest mismatch"),
        (Fault("GET", "/manifests/", status=500, times=None), "HTTP 500 after 2 attempt(s)"),
    ],
    ids=["truncated", "corrupted", "always-500"],
)
def test_faults_fail_clearly_and_leave_the_store_clean(
    pushed: Pushed, proxy: Proxy, busybox_tar: Path, tmp_path: Path, fault: Fault, message: str
) -> None:
    store = tmp_path / "store"
    cli = make_cli(store, tmp_path)
    cli("import", str(busybox_tar), "--tag", "busybox:latest")
    before = _store_snapshot(store)
    names = cli("images").stdout
    proxy.faults.append(fault)
    proc = cli("pull", f"{proxy.host}/acme/one:1", check=False, env=FAST_RETRIES)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert lines[0].startswith(f"{proxy.host}/acme/one")
    if fault.path.startswith("/blobs/"):
        assert re.search(r"@sha256:[0-9a-f]{64}: ", lines[0])
    assert _store_snapshot(store) == before
    assert cli("images").stdout == names


def test_retried_500s_then_success(pushed: Pushed, proxy: Proxy, tmp_path: Path) -> None:
    cli = make_cli(tmp_path / "store", tmp_path)
    proxy.faults.append(Fault("GET", "/manifests/1", status=500, times=2))
    proxy.faults.append(Fault("GET", "/blobs/sha256:", kind="truncate", times=1))
    out = cli("pull", f"{proxy.host}/acme/one:1").stdout
    assert pushed.report["images"]["app.one"]["manifest"] in out
    assert proxy.count("GET", "/manifests/1") == 3


def test_remote_cache_builds_a_fresh_store_with_zero_steps(
    pushed: Pushed, proxy: Proxy, busybox_tar: Path, tmp_path: Path
) -> None:
    cli = make_cli(tmp_path / "store", tmp_path)
    cli("import", str(busybox_tar), "--tag", "busybox:latest")
    write_fleet(tmp_path, _fleet(pushed.host))
    started = time.monotonic()
    report = build(cli, tmp_path, "--cache-from", f"{proxy.host}/cache")
    seconds = time.monotonic() - started
    totals = report["totals"]
    assert (totals["built"], totals["pulled"], totals["failed"]) == (0, 6, 0)
    assert {i: v["manifest"] for i, v in report["images"].items()} == {
        i: v["manifest"] for i, v in pushed.report["images"].items()
    }
    print(f"\nfleet: cold build {pushed.cold_seconds:.2f}s, from the remote cache {seconds:.2f}s")
    # publishing again from the first store uploads nothing
    proxy.reset()
    again = build(pushed.cli, pushed.root, "--cache-to", f"{proxy.host}/cache")
    assert again["totals"]["built"] == 0
    assert proxy.blob_uploads() == [] and proxy.count("PUT") == 0
    assert proxy.count("HEAD", "/manifests/cache-") == 6


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("reg-auth"), auth="htpasswd")
    try:
        yield reg
    finally:
        reg.stop()


def test_auth_push_and_pull_never_leak_the_password(
    pushed: Pushed, auth_registry: Registry, tmp_path: Path
) -> None:
    target = f"{auth_registry.host}/acme/one:1"
    outputs = []
    proc = pushed.cli("push", "one", "--to", target, check=False, env={"HOME": str(tmp_path)})
    assert proc.returncode == 1 and "no credentials found" in proc.stderr
    wrong = {"PIPELINE_REGISTRY_USER": USER, "PIPELINE_REGISTRY_PASSWORD": "x" + PASSWORD}
    proc = pushed.cli("push", "one", "--to", target, check=False, env=wrong)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "wrong username or password" in proc.stderr and auth_registry.host in proc.stderr
    outputs.append(proc.stdout + proc.stderr)

    docker = tmp_path / "docker"
    docker.mkdir()
    import base64

    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (docker / "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": auth}}}))
    proc = pushed.cli("push", "one", "--to", target, env={"DOCKER_CONFIG": str(docker)})
    outputs.append(proc.stdout + proc.stderr)
    fresh = make_cli(tmp_path / "store", tmp_path)
    env = {"PIPELINE_REGISTRY_USER": USER, "PIPELINE_REGISTRY_PASSWORD": PASSWORD}
    proc = fresh("pull", target, env=env)
    outputs.append(proc.stdout + proc.stderr)
    assert pushed.report["images"]["app.one"]["manifest"] in proc.stdout
    assert all(PASSWORD not in text for text in outputs)
    assert no_secret_in([tmp_path / "store", pushed.root / "store"], PASSWORD) == []


def test_gzip_push_pulls_back_to_the_same_image(
    pushed: Pushed, proxy: Proxy, tmp_path: Path
) -> None:
    target = f"{proxy.host}/acme/three-gz:1"
    out = pushed.cli("push", "three", "--to", target, "--compress", "gzip").stdout
    info = json.loads(
        _skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{target}").stdout
    )
    assert {layer["mediaType"] for layer in info["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    }
    assert _line(out, target)["uploaded"] >= 4  # gzip blobs are new blobs
    proxy.reset()
    pushed.cli("push", "three", "--to", target, "--compress", "gzip")
    assert proxy.blob_uploads() == []  # the gzip bytes are reproducible
    fresh = make_cli(tmp_path / "store", tmp_path)
    pulled = fresh("pull", target).stdout
    assert pushed.report["images"]["app.three"]["manifest"] in pulled


def _layout_with_layer(root: Path, members: list[tuple[str, bytes]]) -> Path:
    """An OCI layout whose one layer is a tar written by Python's tarfile: members in
    the given order, mtime 12345 (so not the store's canonical tar form)."""
    import hashlib
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 12345
            info.uname = "someone"
            tar.addfile(info, io.BytesIO(data))
    layer = buf.getvalue()

    def put(data: bytes) -> tuple[str, int]:
        digest = hashlib.sha256(data).hexdigest()
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "blobs" / "sha256" / digest).write_bytes(data)
        return "sha256:" + digest, len(data)

    layer_digest, layer_size = put(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    config_digest, config_size = put(json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    manifest_digest, manifest_size = put(json.dumps(manifest).encode())
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": "x"},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    return root


def _skopeo_push(layout: Path, target: str) -> None:
    _skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--preserve-digests",
        f"oci:{layout}:x",
        f"docker://{target}",
    )


def test_pull_of_a_foreign_image_rekeys_its_layers(registry: Registry, tmp_path: Path) -> None:
    members = [("zeta.txt", b"z\n"), ("alpha.txt", b"a\n")]
    layout = _layout_with_layer(tmp_path / "foreign", members)
    target = f"{registry.host}/other/foreign:1"
    _skopeo_push(layout, target)
    cli = make_cli(tmp_path / "store", tmp_path)
    out = cli("pull", target).stdout
    assert "re-keyed" in out
    stored = json.loads(cli("inspect", target).stdout)
    (layer,) = stored["layers"]
    layer_dir = tmp_path / "store" / "layers" / layer["diff_id"].split(":")[1]
    assert sorted(p.name for p in layer_dir.iterdir()) == ["alpha.txt", "zeta.txt"]
    # the store's form exports and checks out; pulling again transfers no layer
    cli("export", target, "-o", str(tmp_path / "out"), "--format", "oci")
    assert "0 layers fetched" in cli("pull", target).stdout


def test_pull_refuses_a_hostile_layer_and_stays_clean(registry: Registry, tmp_path: Path) -> None:
    layout = _layout_with_layer(tmp_path / "hostile", [("../../escape.txt", b"x\n")])
    target = f"{registry.host}/other/hostile:1"
    _skopeo_push(layout, target)
    store = tmp_path / "store"
    cli = make_cli(store, tmp_path)
    cli("images")  # creates the store
    before = _store_snapshot(store)
    proc = cli("pull", target, check=False)
    assert proc.returncode == 1
    assert "refused path '../../escape.txt'" in proc.stderr
    assert f"{registry.host}/other/hostile@sha256:" in proc.stderr
    assert _store_snapshot(store) == before
    assert not (tmp_path.parent / "escape.txt").exists()


def test_pull_picks_the_platform_from_an_index(pushed: Pushed, tmp_path: Path) -> None:
    from pipeline.registry.client import RegistryClient

    images = pushed.report["images"]
    entries = []
    for app, arch in (("app.one", "amd64"), ("app.two", "arm64")):
        data = (pushed.root / "store" / "blobs" / "sha256").joinpath(
            images[app]["manifest"].split(":")[1]
        )
        entries.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": images[app]["manifest"],
                "size": data.stat().st_size,
                "platform": {"os": "linux", "architecture": arch},
            }
        )
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }
    ).encode()
    # the index's repository must hold the manifests (and their blobs) it lists
    for app in ("one", "two"):
        pushed.cli("push", app, "--to", f"{pushed.host}/acme/multi:{app}")
    client = RegistryClient(pushed.host, environ={})
    index_digest = client.put_manifest(
        "acme/multi", "1", index, "application/vnd.oci.image.index.v1+json"
    )
    cli = make_cli(tmp_path / "store", tmp_path)
    ref = f"{pushed.host}/acme/multi:1"
    out = cli("pull", ref, "--tag", "multi:amd64", "--platform", "linux/amd64").stdout
    assert images["app.one"]["manifest"] in out and index_digest in out
    out = cli("pull", ref, "--tag", "multi:arm64", "--platform", "linux/arm64").stdout
    assert images["app.two"]["manifest"] in out
    proc = cli("pull", ref, "--platform", "linux/s390x", check=False)
    assert proc.returncode == 1
    assert "no linux/s390x image in the index (has: linux/amd64, linux/arm64)" in proc.stderr
