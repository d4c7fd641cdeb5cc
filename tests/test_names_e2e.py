"""Names you can manage (issue 14), end to end with the real CLI, a real store and real
builds on the busybox base: fleet namespaces, tag/rmi/prune, images filters, push to
the spec's current tags (a real registry), base resolution by ``--pull`` with store
images (``localhost/`` included) used as they are, export format from ``-o``, history's
CREATED and SHARED WITH, DOT labels rendered by Graphviz, ``--specs FILE`` and a
``--store`` that must exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Cli, make_cli
from tests.test_registry_support import Registry, registry_fixture  # noqa: F401

pytestmark = pytest.mark.slow

APP = """
app "web" {{
  from       = "{base}"
  source     = "src"
  workdir    = "/srv"
  entrypoint = ["cat", "/srv/who"]
  tags       = [{tags}]
}}
"""

SHARED = """
image "common" {
  from = "busybox:latest"
  run { command = "mkdir -p /opt && seq 1 5000 > /opt/common.txt" }
}
app "api" {
  from       = image.common
  source     = "src"
  workdir    = "/srv"
  entrypoint = ["cat", "/srv/who"]
}
"""


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (CI runs as root)")


def fleet_dir(
    root: Path, who: str, *, base: str = "busybox:latest", tags: str = "", head: str = ""
) -> Path:
    """A repository ``root`` with ``specs/`` holding one app "web" that prints ``who``."""
    specs = root / "specs"
    (specs / "src").mkdir(parents=True, exist_ok=True)
    (specs / "src" / "who").write_text(who + "\n")
    (specs / "web.hcl").write_text(head + APP.format(base=base, tags=tags))
    return root


def repo(store: Path, root: Path) -> Cli:
    return make_cli(store, root)


def names_in(cli: Cli) -> list[str]:
    return [r["name"] for r in json.loads(cli("images", "--format", "json").stdout)]


def test_two_fleets_with_the_same_app_never_collide(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    a = repo(store_path, fleet_dir(tmp_path / "repo-a", "from a"))
    b = repo(store_path, fleet_dir(tmp_path / "repo-b", "from b", head='fleet = "bee"\n'))
    a("build-all", "--progress", "quiet")
    b("build-all", "--progress", "quiet")
    assert {"repo-a/app.web", "bee/app.web"} <= set(names_in(a))
    # each fleet's commands default to its own app
    assert a("run", "web").stdout == "from a\n"
    assert b("run", "web").stdout == "from b\n"
    # FLEET/APP reaches another fleet's
    assert a("run", "bee/web").stdout == "from b\n"
    assert b("inspect", "repo-a/web").stdout == a("inspect", "web").stdout
    # outside any fleet, an app name that two fleets have is ambiguous, not a guess
    outside = repo(store_path, tmp_path)
    proc = outside("run", "web", check=False)
    assert proc.returncode == 2 and "several fleets have it (bee/web, repo-a/web)" in proc.stderr
    assert outside("run", "bee/web").stdout == "from b\n"
    # history, export and why keep working on the qualified names
    assert "COPY . /srv/" in a("history", "web").stdout
    a("export", "web", "-o", str(tmp_path / "a-web"))
    assert (tmp_path / "a-web" / "index.json").is_file()
    assert "app.web" in a("why", "web").stdout


def test_fleet_attribute_is_checked(busybox_store: Cli, tmp_path: Path, store_path: Path) -> None:
    cli = repo(store_path, fleet_dir(tmp_path / "r", "x", head='fleet = "Not OK!"\n'))
    proc = cli("validate", check=False)
    assert proc.returncode == 2
    assert re.search(r"specs/web\.hcl:1:1: attribute \"fleet\": invalid fleet name", proc.stderr)


def test_tag_rmi_and_prune_manage_names_and_free_bytes(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    root = tmp_path / "shop"
    fleet_dir(root, "shop")
    (root / "specs" / "api.hcl").write_text(SHARED)
    cli = repo(store_path, root)
    cli("build-all", "--progress", "quiet")
    cli("tag", "api", "mine/api:1")
    cli("tag", "mine/api:1", "scratch:1")
    assert {"mine/api:1", "scratch:1"} <= set(names_in(cli))
    assert cli("untag", "scratch:1").stdout == "untagged: scratch:1\n"
    assert "scratch:1" not in names_in(cli)
    proc = cli("tag", "api", "other/app.api", check=False)  # ids are the builder's
    assert proc.returncode == 2 and "kept for the images a fleet builds" in proc.stderr
    assert cli("run", "mine/api:1").stdout == "shop\n"
    # a name the current fleet makes is refused without --force
    proc = cli("rmi", "api", check=False)
    assert proc.returncode == 2 and "the current fleet (shop) makes or uses it" in proc.stderr
    proc = cli("rmi", "busybox:latest", check=False)  # its base, too
    assert proc.returncode == 2
    # an app of another fleet goes, with the layers only it reached
    other = repo(store_path, fleet_dir(tmp_path / "old", "old"))
    (tmp_path / "old" / "specs" / "api.hcl").write_text(SHARED.replace("5000", "7000"))
    other("build-all", "--progress", "quiet")
    layers_before = len(os.listdir(store_path / "layers"))
    out = cli("rmi", "old/api").stdout
    assert "untagged: old/app.api" in out
    # its own RUN layer goes; its COPY layer is also old/app.web's, so it stays
    assert re.search(r"removed layer [0-9a-f]{12} .*seq 1 7000", out)
    assert "COPY" not in out and "removed 1 name, 1 layer, " in out
    assert len(os.listdir(store_path / "layers")) == layers_before - 1
    # prune --all --dry-run lists what would go and changes nothing
    before = names_in(cli)
    dry = cli("prune", "--all", "--dry-run").stdout
    assert "would untag: old/app.web" in dry and "would untag: mine/api:1" in dry
    assert "shop/app.web" not in dry and "busybox:latest" not in dry
    assert names_in(cli) == before
    # prune --all drops every name the current fleet neither makes nor uses
    out = cli("prune", "--all").stdout
    assert "untagged: old/app.web" in out and re.search(r"removed layer .*COPY", out)
    assert names_in(cli) == ["busybox:latest", "shop/app.api", "shop/app.web"]
    assert ": 0 built," in cli("build-all", "--progress", "quiet").stdout  # nothing it uses lost
    assert cli("prune").stdout.strip() == "removed 0 layers, 0 blobs, 0 B"


def test_images_filters_and_json(busybox_store: Cli, store_path: Path, tmp_path: Path) -> None:
    cli = repo(store_path, fleet_dir(tmp_path / "f", "f", tags='"acme/web:2"'))
    cli("build-all", "--progress", "quiet")
    table = cli("images", "acme/*").stdout.splitlines()
    assert table[0].split() == ["NAME", "MANIFEST", "LAYERS", "SIZE"]
    assert [line.split()[0] for line in table[1:]] == ["acme/web:2"]
    rows = json.loads(cli("images", "*app.*", "--format", "json").stdout)
    assert [(r["name"], r["fleet"], r["layers"]) for r in rows] == [("f/app.web", "f", 2)]
    assert rows[0]["manifest"].startswith("sha256:") and rows[0]["size"] > 1_000_000


def test_push_sends_the_current_tags_never_stale_names(
    busybox_store: Cli, store_path: Path, tmp_path: Path, registry: Registry
) -> None:
    host = registry.host
    root = fleet_dir(tmp_path / "p", "p", tags=f'"{host}/team/web:1"')
    cli = repo(store_path, root)
    cli("build-all", "--progress", "quiet")
    cli("tag", "web", "127.0.0.1:9/gone/web:1")  # a stale name for the same image
    # the spec now names another tag; nothing rebuilt (same image)
    fleet_dir(root, "p", tags=f'"{host}/team/web:2"')
    lines = cli("push", "web").stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{host}/team/web:2: sha256:"), lines
    tags = subprocess.run(
        ["skopeo", "list-tags", "--tls-verify=false", f"docker://{host}/team/web"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert json.loads(tags.stdout)["Tags"] == ["2"]
    # --all pushes the fleet's outputs to their current tags too
    assert f"{host}/team/web:2:" in cli("push", "--all").stdout
    # another fleet's app has no known tags: --to is required, never a guess
    other = repo(store_path, tmp_path)
    proc = other("push", "p/web", check=False)
    assert proc.returncode == 2 and "give --to" in proc.stderr
    assert f"{host}/x/web:9:" in other("push", "p/web", "--to", f"{host}/x/web:9").stdout


def test_store_images_are_bases_as_they_are_and_pull_policy(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    busybox_store("tag", "busybox:latest", "localhost/base:latest")
    busybox_store("tag", "busybox:latest", "plainbase:1")
    root = fleet_dir(tmp_path / "l", "local", base="localhost/base:latest")
    (root / "specs" / "more.hcl").write_text(
        'app "other" {\n  from = "localhost/plainbase:1"\n  entrypoint = ["echo", "hi"]\n}\n'
        'app "far" {\n  from = "127.0.0.1:9/none/base:1"\n  entrypoint = ["echo", "hi"]\n}\n'
    )
    cli = repo(store_path, root)
    # used from the store, no registry contacted (127.0.0.1:9 would refuse)
    for policy in ("missing", "never"):
        proc = cli("build", "web", "other", "--progress", "plain", f"--pull={policy}")
        assert "pulled" not in proc.stderr
    assert cli("run", "web").stdout == "local\n"
    assert cli("run", "other").stdout == "hi\n"
    assert not (root / "specs" / "pipeline.lock").exists()
    # --pull=never: a base the store lacks is an error at the FROM's line
    proc = cli("build", "far", "--pull=never", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        'specs/more.hcl:6:3: app "far": FROM 127.0.0.1:9/none/base:1: not in the store, '
        "and --pull=never"
    )
    # in a Dockerfile, the error names the Dockerfile's FROM line
    (root / "specs" / "legacy").mkdir()
    (root / "specs" / "legacy" / "Dockerfile").write_text(
        '# a legacy app\nFROM 127.0.0.1:9/none/old:2\nCMD ["true"]\n'
    )
    (root / "specs" / "legacy.hcl").write_text(
        'app "legacy" { dockerfile = "legacy/Dockerfile" }\n'
    )
    proc = cli("build", "legacy", "--pull=never", check=False)
    assert proc.returncode == 2
    assert re.match(r"\S*specs/legacy/Dockerfile:2(:1)?: app \"legacy\": FROM 127", proc.stderr)
    # a registry that cannot be reached: the error starts at the FROM's line too
    proc = cli("build", "far", check=False, env={"PIPELINE_REGISTRY_RETRIES": "1"})
    assert proc.returncode != 0
    assert proc.stderr.startswith('specs/more.hcl:6:3: app "far": FROM 127.0.0.1:9/none/base:1: ')


def test_export_infers_the_format_from_the_output_name(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    cli = repo(store_path, fleet_dir(tmp_path / "e", "e"))
    cli("build-all", "--progress", "quiet")
    out = cli("export", "web", "-o", str(tmp_path / "web.tar")).stdout
    assert out.startswith(f"{tmp_path / 'web.tar'}: oci-archive sha256:")
    assert (tmp_path / "web.tar").is_file()
    found = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{tmp_path / 'web.tar'}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert len(json.loads(found.stdout)["Layers"]) == 2
    cli("export", "web", "-o", str(tmp_path / "d.tar"), "--format", "docker-archive")
    found = subprocess.run(
        ["skopeo", "inspect", f"docker-archive:{tmp_path / 'd.tar'}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert len(json.loads(found.stdout)["Layers"]) == 2
    cli("export", "web", "-o", str(tmp_path / "layout"))
    assert (tmp_path / "layout" / "oci-layout").is_file()


def test_history_created_and_one_shared_with(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    root = fleet_dir(tmp_path / "h", "h", tags='"acme/web:1"')
    (root / "specs" / "api.hcl").write_text(SHARED)
    cli = repo(store_path, root)
    cli("build-all", "--progress", "quiet")

    def history(name: str) -> list[str]:
        return cli("history", name).stdout.splitlines()

    def timeless(lines: list[str]) -> list[str]:
        return [ln[:14] + ln[29:] for ln in lines]  # CREATED moves on between calls

    lines = history("web")
    assert timeless(lines) == timeless(history("acme/web:1")) == timeless(history("h/app.web"))
    assert lines[0].split() == ["LAYER", "CREATED", "SIZE", "SHARED", "WITH", "CREATED", "BY"]
    rows = [(ln[:13].strip(), ln[14:29].strip(), ln[42:70].strip(), ln[71:]) for ln in lines[1:]]
    assert all(re.fullmatch(r"\d+ (second|minute)s? ago", when) for _, when, _, _ in rows), rows
    assert rows[-1][2] == "api"  # the busybox layer: the other app, never web itself
    assert all("web" not in sharers for _, _, sharers, _ in rows), rows
    # CREATED is the store's, not the image's: the config holds no build time
    config = json.loads(cli("inspect", "web").stdout)["config"]
    assert "created" not in config or config["created"].startswith("1970-01-01")


def test_dot_labels_render_in_graphviz(
    busybox_store: Cli, store_path: Path, tmp_path: Path
) -> None:
    if shutil.which("dot") is None:
        pytest.fail("graphviz is missing: run bash .ci/setup")
    root = fleet_dir(tmp_path / "g", "g")
    (root / "specs" / "api.hcl").write_text(
        SHARED.replace("seq 1 5000", 'seq 1 5000 && echo \\"a quoted, long command line\\"')
    )
    cli = repo(store_path, root)
    dot = cli("plan", "--format", "dot").stdout
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert "FROM busybox:latest" in texts
    assert any(t.startswith("RUN ") and t.endswith("…") for t in texts), texts
    assert not any("\\n" in t or "u2026" in t for t in texts), texts


def test_specs_file_alone(busybox_store: Cli, store_path: Path, tmp_path: Path) -> None:
    root = fleet_dir(tmp_path / "s", "s")
    (root / "specs" / "broken.hcl").write_text("app {")
    cli = repo(store_path, root)
    assert cli("validate", check=False).returncode == 2  # the directory has a broken file
    out = cli("validate", "--specs", "specs/web.hcl").stdout
    assert out.startswith("specs/web.hcl: ok: 1 files, 1 apps")
    cli("build-all", "--specs", "specs/web.hcl", "--progress", "quiet")
    assert "s/app.web" in names_in(cli)  # the fleet of specs/ either way


def test_a_mistyped_store_is_never_created(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "PIPELINE_STORE"}
        return subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    typo = tmp_path / "stroe"
    proc = run("--store", str(typo), "images")
    assert proc.returncode == 2 and not typo.exists()
    assert f"{typo}: no such store" in proc.stderr and "--init" in proc.stderr
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    proc = run("--store", str(tmp_path / "notes"), "images")
    assert proc.returncode == 2 and "not a pipeline store" in proc.stderr
    assert sorted(os.listdir(tmp_path / "notes")) == ["a.txt"]
    assert run("--init", "--store", str(typo), "images").returncode == 0
    assert (typo / "index.db").is_file()
    assert run("--store", str(typo), "images").returncode == 0  # now it is a store
    (tmp_path / "empty").mkdir()
    assert run("--store", str(tmp_path / "empty"), "images").returncode == 0
