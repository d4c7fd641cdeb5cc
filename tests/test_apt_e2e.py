"""apt hygiene, for real on a Debian base made by `pipeline bootstrap`: `apt` steps keep
apt's package lists and .debs in the store's cache mounts, never in the layer; one
build runs `apt-get update` once for all its apt sets; the installed packages work;
the base itself and a plain `RUN apt-get install` on it keep no .debs either, and a
second bootstrap takes its .debs from the cache.

Slow (a Debian bootstrap and real apt downloads from the Debian mirror); CI runs it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import Cli, make_cli

pytestmark = pytest.mark.slow

SPECS = """
app "fetch" {
  from       = "debian:bookworm"
  apt        = ["curl", "ca-certificates"]
  entrypoint = ["curl"]
}

app "query" {
  from = "debian:bookworm"
  apt  = ["jq"]
}

image "plain" {
  from = "debian:bookworm"
  run {
    command = "apt-get update && apt-get install -y jq && rm -rf /var/lib/apt/lists/*"
  }
  tags = ["plain:1"]
}
"""
MIRROR = "http://deb.debian.org/debian/"
# `apt-get update` fetching (or checking) the main suite's index: once per update.
UPDATE_LINE = re.compile(r"(Get|Hit|Ign):\d+ http://deb\.debian\.org/debian bookworm InRelease")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, Path, Path]:
    work = tmp_path_factory.mktemp("apt")
    (work / "specs").mkdir()
    (work / "specs" / "apps.hcl").write_text(SPECS)
    store = work / "store"
    cli = make_cli(store, work)
    cli("bootstrap", "debian:bookworm", timeout=900)
    return cli, work, store


def top_layer(store: Path, cli: Cli, name: str) -> Path:
    config = json.loads(cli("inspect", name).stdout)["config"]
    diff_id = config["rootfs"]["diff_ids"][-1]
    return store / "layers" / diff_id.removeprefix("sha256:")


def apt_leftovers(layer: Path) -> list[str]:
    """What apt would leave in a layer: list files, binary caches, .debs (its empty
    lock file and partial dir, as in Docker's debian images, are not)."""
    lists = (layer / "var/lib/apt/lists").glob("*")
    found = [p for p in lists if p.name != "partial" and (p.name != "lock" or p.stat().st_size)]
    found += list((layer / "var/cache/apt").glob("*.bin"))
    found += list((layer / "var/cache/apt/archives").glob("*.deb"))
    return sorted(str(p.relative_to(layer)) for p in found)


def test_base_has_no_apt_caches_and_drops_downloads(world: tuple[Cli, Path, Path]) -> None:
    cli, _, store = world
    base = top_layer(store, cli, "debian:bookworm")
    assert apt_leftovers(base) == []
    clean = (base / "etc/apt/apt.conf.d/90pipeline-clean").read_text()
    assert 'APT::Keep-Downloaded-Packages "false";' in clean
    # the bootstrap's .debs went to the cache the apt steps mount, not into the base
    cached = list((store / "cache" / "apt-archives" / "archives").glob("*.deb"))
    assert len(cached) > 50, cached


def test_apt_sets_update_once_per_build_and_keep_caches_out_of_layers(
    world: tuple[Cli, Path, Path],
) -> None:
    cli, work, store = world
    out = cli("build", "fetch", "query", "--progress", "plain", "-v", timeout=1500)
    text = out.stdout + out.stderr
    assert len(UPDATE_LINE.findall(text)) == 1, text  # two apt sets, one update
    for app in ("fetch", "query"):
        layer = top_layer(store, cli, app)
        assert apt_leftovers(layer) == [], app
        assert (layer / "usr/bin").is_dir()  # the layer does hold the packages
    lists = store / "cache" / "apt-lists"
    assert list(lists.glob("*/*_Packages")), "the lists are in the cache mount"
    assert list((store / "cache" / "apt-archives" / "archives").glob("curl_*.deb"))

    # the packages work: curl against the Debian mirror (plain HTTP: a TLS-intercepting
    # proxy here has its own CA, which `run` does not mount), its CA bundle made, jq
    version = cli("run", "fetch", "--version").stdout
    assert version.startswith("curl ")
    code = cli("run", "fetch", "-sS", "-o", "/dev/null", "-w", "%{http_code}", MIRROR)
    assert code.stdout in ("200", "301", "302"), code
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    assert cli("run", "--entrypoint", "grep", "fetch", "-c", "BEGIN CERT", bundle).stdout != "0\n"
    got = cli("run", "--entrypoint", "sh", "query", "-c", "echo '{\"a\": 42}' | jq .a")
    assert got.stdout == "42\n"

    # a later build with a new apt set refreshes the lists again, once
    (work / "specs" / "more.hcl").write_text(
        'app "tree" {\n  from = "debian:bookworm"\n  apt  = ["tree", "jq"]\n}\n'
    )
    again = cli("build-all", "--progress", "plain", "-v", timeout=1500)
    assert len(UPDATE_LINE.findall(again.stdout + again.stderr)) == 2  # ours + plain's own
    assert apt_leftovers(top_layer(store, cli, "tree")) == []
    # a plain RUN apt-get install on the bootstrapped base keeps no .debs either
    assert apt_leftovers(top_layer(store, cli, "plain:1")) == []


def test_a_second_bootstrap_takes_its_debs_from_the_cache(
    world: tuple[Cli, Path, Path], tmp_path: Path
) -> None:
    cli, _, store = world
    archives = store / "cache" / "apt-archives" / "archives"
    before = {p.name: p.stat().st_mtime_ns for p in archives.glob("*.deb")}
    again = make_cli(store, tmp_path)
    again("bootstrap", "debian:bookworm", timeout=900)
    after = {p.name: p.stat().st_mtime_ns for p in archives.glob("*.deb")}
    assert after == before  # nothing new downloaded, nothing rewritten
    assert apt_leftovers(top_layer(store, cli, "debian:bookworm")) == []
