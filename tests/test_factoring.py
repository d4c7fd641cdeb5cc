"""Fleet-wide dependency factoring (issue 15): pure planning, keys, the lock file, and
for real: a generated fleet of locally made wheels built factored, compared file by
file with one-shot installs of the same closures (and checked with pip itself)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from benchmarks.wheelfleet import WheelShape, make_wheel, write_fleet
from pipeline.build.images import load_image
from pipeline.build.pipresolve import read_pip_lock, wheel_paths, write_pip_lock
from pipeline.factoring import (
    PACKAGE_COMMENT,
    Pin,
    Resolution,
    canonical_name,
    install_command,
    overlapping,
    plan_units,
    resolution_key,
    stack_key,
)
from pipeline.fs.layerstack import LayerStack
from pipeline.graph import PipOptions, ResolvedBase, compile_fleet
from pipeline.model import BaseRef, Fleet, ImageDef, Mount, Run
from pipeline.oci.config import ImageConfig
from pipeline.store import Store
from tests.conftest import Cli, make_cli


def pin(name: str, file: str = "") -> Pin:
    return Pin(name, "1.0", file or f"{name}-1.0-py3-none-any.whl", name.encode().hex() * 2)


# -- pure planning ---------------------------------------------------------------------


def test_units_are_ordered_by_popularity_then_name() -> None:
    res = Resolution(("a", "b", "c"), (pin("a"), pin("b"), pin("c")))
    popularity = {pin("c").id: 5, pin("a").id: 2, pin("b").id: 2}
    units, chained = plan_units(res, popularity, 10)
    assert [u.pins[0].name for u in units] == ["c", "a", "b"]
    assert all(u.reason == "own" for u in units) and chained == []


def test_overlapping_packages_share_one_layer() -> None:
    files = {
        "a": {"site/x.pth": "1", "site/a/__init__.py": "2", "site/ns/__init__.py": "0"},
        "b": {"site/x.pth": "3", "site/b/__init__.py": "2", "site/ns/__init__.py": "0"},
        "c": {"site/c/__init__.py": "4", "bin/tool": "console_scripts:c:main"},
        "d": {"bin/tool": "console_scripts:d:main"},
        "e": {"site/e.py": "5", "site/ns/__init__.py": "0"},  # the same bytes: no conflict
    }
    groups = overlapping(files)
    assert groups == (("a", "b"), ("c", "d"))
    res = Resolution(("a",), tuple(pin(n) for n in "abcde"), groups)
    units, _ = plan_units(res, {}, 10)
    assert sorted((u.reason, tuple(p.name for p in u.pins)) for u in units) == [
        ("conflict", ("a", "b")),
        ("conflict", ("c", "d")),
        ("own", ("e",)),
    ]


def test_the_budget_combines_the_least_shared() -> None:
    pins = tuple(pin(n) for n in "abcdef")
    popularity = {p.id: 10 - i for i, p in enumerate(pins)}  # a most shared
    units, _ = plan_units(Resolution(("a",), pins), popularity, 3)
    assert [tuple(p.name for p in u.pins) for u in units] == [("a",), ("b",), ("c", "d", "e", "f")]
    assert units[-1].reason == "budget" and "layer budget of 3" in units[-1].detail


def test_an_sdist_is_chained() -> None:
    res = Resolution(("a",), (pin("a"), pin("s", "s-1.0.tar.gz")))
    units, chained = plan_units(res, {}, 10)
    assert [u.pins[0].name for u in units] == ["a"] and [p.name for p in chained] == ["s"]


def test_names_and_commands() -> None:
    assert canonical_name("Flask_MySQL") == "flask-mysql"
    assert canonical_name("zope.interface") == "zope-interface"
    cmd = install_command([pin("a")])
    assert pin("a").sha256 in cmd and "--no-deps" in cmd and "'a==1.0'" in cmd
    assert "a-1.0-py3-none-any.whl" in cmd.split("pip install", 1)[0]  # fetched, checked
    assert stack_key("sha256:e", ["k2", "k1"]) == stack_key("sha256:e", ["k1", "k2"])


# -- compiling: keys of package layers ---------------------------------------------------

BASE = ResolvedBase("py:1", "sha256:" + "1" * 64, ImageConfig(), ("sha256:" + "2" * 64,))
PIP_CACHE = Mount(type="cache", target="/root/.cache/pip", id="pip")


def fleet_of(sets: dict[str, tuple[str, ...]], off: tuple[str, ...] = ()) -> Fleet:
    images = {}
    for name, pkgs in sets.items():
        step = Run("pip install " + " ".join(pkgs), mounts=(PIP_CACHE,), pip=pkgs)
        if name in off:
            step = Run(step.command, mounts=(PIP_CACHE,))
        images[f"app.{name}"] = ImageDef(
            f"app.{name}", BaseRef("store", "py:1"), (step,), is_app=True
        )
    return Fleet(images)


def no_copy(_: object) -> str:
    raise AssertionError


def compiled(sets: dict[str, tuple[str, ...]], resolutions: dict, **kw: object):  # type: ignore[no-untyped-def]
    fleet = fleet_of(sets, **kw)  # type: ignore[arg-type]
    return compile_fleet(fleet, {"py:1": BASE}, no_copy, pip=PipOptions(True, resolutions))


def test_package_layers_depend_on_the_environment_and_their_pin_only() -> None:
    sets = {"web": ("a", "b"), "api": ("a", "c")}
    graph = compiled(sets, {})
    assert len(graph.pending_pip) == 2  # nothing resolved: one-shot steps, listed
    first = next(iter(graph.pending_pip.values()))
    env_key, env = first.env_key, first.env
    assert first.key == resolution_key(env_key, first.packages, env)
    resolutions = {
        resolution_key(env_key, ("a", "b"), env): Resolution(("a", "b"), (pin("a"), pin("b"))),
        resolution_key(env_key, ("a", "c"), env): Resolution(("a", "c"), (pin("a"), pin("c"))),
    }
    graph = compiled(sets, resolutions)
    assert not graph.pending_pip
    web, api = graph.images["app.web"], graph.images["app.api"]
    shared = {p.key for p in web.packages} & {p.key for p in api.packages}
    assert len(shared) == 1  # "a": one layer for both, though the sets differ
    (a_key,) = shared
    assert graph.node(a_key).parent == env_key
    assert graph.apps_of(a_key) == {"app.web", "app.api"}
    stack = graph.node(web.top or "")
    assert stack.kind == "stack" and stack.inputs[0] == a_key  # the most shared first
    # a third app with b only reuses web's "b" layer: keys do not see the other pins
    sets3 = {**sets, "cart": ("b",)}
    resolutions[resolution_key(env_key, ("b",), env)] = Resolution(("b",), (pin("b"),))
    graph3 = compiled(sets3, resolutions)
    assert {p.key for p in graph3.images["app.web"].packages} == {p.key for p in web.packages}


def test_factoring_off_gives_the_one_shot_key() -> None:
    sets = {"web": ("a", "b")}
    plain = compiled(sets, {}, off=("web",))
    assert not plain.pending_pip
    pending = compiled(sets, {})
    assert plain.images["app.web"].nodes == pending.images["app.web"].nodes


# -- the lock file and wheels ----------------------------------------------------------


def test_lock_round_trip_keeps_bases(tmp_path: Path) -> None:
    lock = tmp_path / "pipeline.lock"
    lock.write_text(json.dumps({"version": 1, "bases": {"r/x:1": "sha256:" + "a" * 64}}))
    res = Resolution(("a",), (pin("a"), pin("b")), (("a", "b"),))
    write_pip_lock(lock, {"sha256:k": res})
    assert read_pip_lock(lock) == {"sha256:k": res}
    assert json.loads(lock.read_text())["bases"] == {"r/x:1": "sha256:" + "a" * 64}


def test_wheel_paths_include_console_scripts(tmp_path: Path) -> None:
    paths = wheel_paths(make_wheel(0, 10, tmp_path))
    assert {"site/pkg00/__init__.py", "site/pipeline_shared.pth", "bin/pkg00-tool"} <= set(paths)
    assert paths["bin/pkg00-tool"] == "console_scripts:pkg00:VALUE"
    assert (
        paths["site/pipeline_shared.pth"]
        == wheel_paths(make_wheel(1, 10, tmp_path))["site/pipeline_shared.pth"]
    )


# -- for real: a generated fleet, factored vs one-shot ------------------------------------

SITE = "/usr/local"
SHAPE = WheelShape(apps=6, pool=8, min_kib=16, max_kib=64, min_set=2, max_set=4, conflict=True)


def tree(store: Store, name: str, root: str = SITE) -> dict[str, tuple[int, bytes]]:
    """Path -> (mode, bytes or symlink target) of everything under ``root``."""
    image = load_image(store, name)
    stack = LayerStack([store.layer_path(d) for d, _ in reversed(image.layers)])
    out = {}
    for entry in stack.walk(root):
        st = entry.stat
        if stat.S_ISREG(st.st_mode):
            data = entry.host.read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            data = os.readlink(entry.host).encode()
        else:
            data = b""
        out[entry.path] = (st.st_mode, data)
    return out


@pytest.fixture(scope="module")
def built_fleet(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Cli, Path, list[list[str]], Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root (overlayfs sandbox)")
    work = tmp_path_factory.mktemp("factoring")
    shared = os.environ.get("PIPELINE_TEST_DEBIAN_STORE")  # a store that has debian:bookworm
    store = Path(shared) if shared else work / "store"
    cli = make_cli(store, work)
    if not shared:
        cli("bootstrap", "debian:bookworm", timeout=900)
    else:  # wheels of an earlier generated fleet have the same names: not those
        for old in (store / "cache" / "pip" / "wheels").glob("pkg*.whl"):
            old.unlink()
    sets = write_fleet(work, SHAPE)
    cli("build-all", "--specs", "specs", "--progress", "plain", "-j", "2", timeout=1500)
    return cli, work, sets, store


def compare_with_one_shot(
    cli: Cli, specs: Path, store_path: Path, apps: dict[str, list[str]], base: str
) -> None:
    """Build, next to each factored app, a one-shot ``pip install --no-deps`` of its
    locked closure (on ``base``, the app's own base) and pip's own one-shot install of
    its set (``factoring = false``); check pip and imports in both; compare /usr/local
    file by file (paths, modes, bytes, link targets)."""
    lock = read_pip_lock(specs / "pipeline.lock")
    by_set = {r.packages: r for r in lock.values()}
    extra = []
    for name, pkgs in apps.items():
        reqs = " ".join(p.req for p in by_set[tuple(sorted(pkgs))].pins)
        imports = ", ".join(p.split("==")[0].replace("-", "_") for p in pkgs)
        # flask-mysql 1.5.2 itself fails to import under Flask 3 (one-shot too): its driver
        imports = imports.replace("flask_mysql", "pymysql")
        check = f"python3 -m pip check && python3 -c 'import {imports}' && python3 -m pip freeze"
        quoted = ", ".join(f'"{p}"' for p in pkgs)
        extra.append(
            f'image "one-{name}" {{\n  from = {base}\n  run {{\n    command = '
            f'"python3 -m pip install -q --break-system-packages --no-deps {reqs}"\n  }}\n}}\n'
            f'app "plain-{name}" {{\n  from = {base}\n  factoring = false\n'
            f"  pip = [{quoted}]\n}}\n"
            f'image "check-{name}" {{\n  from = app.{name}\n  run {{\n    command = '
            f'"{check} > /freeze.txt"\n  }}\n}}\n'
            f'image "checkone-{name}" {{\n  from = image.one-{name}\n  run {{\n    command = '
            f'"{check} > /freeze.txt"\n  }}\n}}\n'
        )
    (specs / "compare.hcl").write_text("".join(extra))
    names = [f"{k}-{n}" for n in apps for k in ("one", "plain", "check", "checkone")]
    cli("build", *names, "--specs", str(specs), "--progress", "plain", "-j", "2", timeout=1500)
    store = Store(store_path)
    for name, pkgs in apps.items():
        factored = tree(store, f"app.{name}")
        assert sum("dist-info" in p for p in factored) >= len(pkgs), name
        assert factored == tree(store, f"image.one-{name}"), name
        freeze = tree(store, f"image.check-{name}", "/freeze.txt")["/freeze.txt"][1]
        assert freeze == tree(store, f"image.checkone-{name}", "/freeze.txt")["/freeze.txt"][1]
        for p in pkgs:
            assert p.split("==")[0].encode() in freeze.lower(), (name, p)
        # against pip's own one-shot install of the set, only REQUESTED markers differ
        # (pip writes one for each package named on its command line)
        plain = tree(store, f"app.plain-{name}")
        differ = {p for p in factored.keys() | plain.keys() if factored.get(p) != plain.get(p)}
        # and, for a path two packages write with different bytes, which one pip wrote last
        markers = ("/REQUESTED", "/RECORD", "/pipeline_conflict.txt")
        assert all(p.endswith(markers) for p in differ), sorted(differ)
        # the image really is stacked: one layer per package (or overlap group)
        history = load_image(store, f"app.{name}").history
        assert sum(str(h.get("comment", "")).startswith(PACKAGE_COMMENT) for h in history) > 1


@pytest.mark.slow
def test_factored_images_equal_one_shot_installs(
    built_fleet: tuple[Cli, Path, list[list[str]], Path],
) -> None:
    cli, work, sets, store_path = built_fleet
    specs = work / "specs"
    lock = read_pip_lock(specs / "pipeline.lock")
    assert len(lock) == len({tuple(s) for s in sets})  # one resolution per distinct set
    both = [r for r in lock.values() if {"pkg02", "pkg05"} <= set(r.packages)]
    assert both and all(("pkg02", "pkg05") in r.groups for r in both)  # differ: one layer
    assert not any(("pkg00", "pkg01") in r.groups for r in lock.values())  # same bytes
    apps = {f"app{n:02d}": pkgs for n, pkgs in enumerate(sets)}
    compare_with_one_shot(cli, specs, store_path, apps, "image.pybase")


EXAMPLE_APPS = {  # one app per distinct pip set of specs/ (real packages from PyPI)
    "web": ["flask==3.0.3", "flask-mysql==1.5.2"],
    "api": ["flask==3.0.3", "requests==2.32.3"],
    "cart": ["flask==3.0.3", "redis==5.0.8"],
}


@pytest.mark.slow
def test_the_example_fleet_factored_equals_one_shot(tmp_path: Path) -> None:
    """specs/ for real (PyPI): Flask and its dependencies are one set of layers for the
    three pip sets, and each app equals its one-shot install."""
    if os.geteuid() != 0:
        pytest.skip("needs root (overlayfs sandbox)")
    import shutil

    from tests.conftest import REPO

    shared = os.environ.get("PIPELINE_TEST_DEBIAN_STORE")
    store = Path(shared) if shared else tmp_path / "store"
    cli = make_cli(store, tmp_path)
    if not shared:
        cli("bootstrap", "debian:bookworm", timeout=900)
    specs = tmp_path / "specs"
    shutil.copytree(REPO / "specs", specs)
    (specs / "pipeline.lock").unlink(missing_ok=True)
    cli("build", *EXAMPLE_APPS, "--specs", str(specs), "--progress", "plain", timeout=1500)
    graph_apps = Store(store)
    flask = [
        h
        for h in load_image(graph_apps, "app.web").history
        if "flask==3.0.3" in str(h.get("comment"))
    ]
    assert flask
    layers = {a: {d for d, _ in load_image(graph_apps, f"app.{a}").layers} for a in EXAMPLE_APPS}
    # base + Python, then Flask and its six dependencies: one layer each, for all three
    assert len(layers["web"] & layers["api"] & layers["cart"]) >= 2 + 7
    compare_with_one_shot(cli, specs, store, EXAMPLE_APPS, "image.python")


# -- apt: order-based sharing ------------------------------------------------------------


def test_apt_sets_share_the_longest_common_prefix(tmp_path: Path) -> None:
    from pipeline.spec.loader import load_fleet

    apps = {"a": ["curl", "git", "vim"], "b": ["git", "curl"], "c": ["curl"], "d": ["jq"]}
    text = 'image "base" {\n  from = "scratch"\n}\n'
    for name, pkgs in apps.items():
        quoted = ", ".join(f'"{p}"' for p in pkgs)
        text += f'app "{name}" {{\n  from = image.base\n  apt = [{quoted}]\n}}\n'
    text += 'app "e" {\n  from = image.base\n  apt = ["git", "curl"]\n  factoring = false\n}\n'
    (tmp_path / "f.hcl").write_text(text)
    fleet = load_fleet(tmp_path)

    def layers(app: str) -> list[str]:
        return [s.display for s in fleet.images[f"app.{app}"].steps if isinstance(s, Run)]

    # curl: 3 apps (e is off), git: 2, vim, jq: 1 -> the chains share their prefixes
    assert layers("a") == ["apt-get install curl", "apt-get install git", "apt-get install vim"]
    assert layers("b") == ["apt-get install curl", "apt-get install git"]
    assert layers("c") == ["apt-get install curl"]
    assert layers("d") == ["apt-get install jq"]
    assert layers("e") == ["apt-get install curl git"]  # factoring off: one layer, as before
    off = load_fleet(tmp_path, factoring=False).images["app.a"].steps
    assert [s.display for s in off if isinstance(s, Run)] == ["apt-get install curl git vim"]


def test_adding_a_package_adds_only_its_layer() -> None:
    """Graph level: one app gains a package -> the new nodes are that package's layer and
    the app's stack (no layer of its own); the source layer and all others keep their
    keys (the source COPY is linked to the environment, not to the stack)."""
    from pipeline.model import Copy

    def fleet(web: tuple[str, ...]) -> Fleet:
        images = {}
        for name, pkgs in (("web", web), ("api", ("a", "c"))):
            run = Run("pip install " + " ".join(pkgs), mounts=(PIP_CACHE,), pip=pkgs)
            src = Copy((".",), "/app/", context=f"/src/{name}")
            images[f"app.{name}"] = ImageDef(
                f"app.{name}", BaseRef("store", "py:1"), (run, src), is_app=True
            )
        return Fleet(images)

    def graph(web: tuple[str, ...], res: dict):  # type: ignore[no-untyped-def]
        return compile_fleet(
            fleet(web), {"py:1": BASE}, lambda c: "sha256:" + "c" * 64, pip=PipOptions(True, res)
        )

    pending = graph(("a", "b"), {}).pending_pip
    res = {}
    for sets in (("a", "b"), ("a", "c"), ("a", "b", "c"), ("a", "b", "d")):
        item = next(iter(pending.values()))
        key = resolution_key(item.env_key, sets, item.env)
        res[key] = Resolution(sets, tuple(pin(n) for n in sets))
    before = graph(("a", "b"), res)
    after = graph(("a", "b", "c"), res)
    new = set(after.nodes) - set(before.nodes)
    kinds = sorted(after.node(k).kind for k in new)
    assert kinds == ["stack"]  # "c" exists already (api has it): no new layer at all
    assert before.node(before.images["app.web"].top or "").inputs[-1] in after.nodes  # source
    fresh = graph(("a", "b", "d"), res)
    new = set(fresh.nodes) - set(before.nodes)
    assert sorted(fresh.node(k).kind for k in new) == ["run", "stack"]  # d's layer only
    assert [fresh.node(k).label for k in new if fresh.node(k).kind == "run"] == [
        "RUN pip d==1.0 (--no-deps)"
    ]
