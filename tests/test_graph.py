"""The compiler's merge invariants, on hand-built fleets (pure: no files, no store)."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from pipeline.digest import sha256_bytes
from pipeline.errors import Location
from pipeline.graph import ResolvedBase, compile_fleet
from pipeline.model import BaseRef, Copy, Fleet, ImageDef, Meta, Run
from pipeline.oci.config import ImageConfig
from pipeline.spec.lower import AppFields, lower_app

BASE = ResolvedBase(
    ref="debian:bookworm",
    manifest_digest="sha256:" + "b" * 64,
    config=ImageConfig(env=(("PATH", "/usr/bin:/bin"),)),
    diff_ids=("sha256:" + "1" * 64,),
    history=(("debootstrap", False),),
)
BASES = {"debian:bookworm": BASE}


def content_digest(copy: Copy) -> str:
    """A stand-in for the context hasher: the content is named by the context path."""
    return sha256_bytes(copy.context.encode())


def python_image() -> ImageDef:
    return ImageDef(
        id="image.python",
        base=BaseRef("store", "debian:bookworm"),
        steps=(
            Run("apt-get install -y python3"),
            Meta("env", (("PYTHONUNBUFFERED", "1"),)),
        ),
    )


def app(name: str, pip: tuple[str, ...], source: str, apt: tuple[str, ...] = ()) -> ImageDef:
    return lower_app(
        AppFields(
            id=f"app.{name}",
            base=BaseRef("block", "image.python"),
            apt=apt,
            pip=pip,
            source=source,
            workdir="/opt/source-code",
            env=(("SERVICE", name),),
            entrypoint=("flask", "run"),
        )
    )


def fleet(*apps: ImageDef) -> Fleet:
    images = {i.id: i for i in (python_image(), *apps)}
    return Fleet(images=images)


def compile_(f: Fleet, digest=content_digest, bases=BASES):  # type: ignore[no-untyped-def]
    return compile_fleet(f, bases, digest)


def test_apps_with_the_same_packages_in_any_order_share_the_pip_node() -> None:
    g = compile_(
        fleet(
            app("a", ("flask", "requests"), "/src/a"),
            app("b", ("requests", "flask", "flask"), "/src/b"),
        )
    )
    a, b = g.images["app.a"].nodes, g.images["app.b"].nodes
    assert a[:3] == b[:3]  # base, python, pip
    assert a[3] != b[3]  # each app's own source
    assert g.apps_of(a[2]) == {"app.a", "app.b"}
    assert g.apps_of(a[3]) == {"app.a"}


def test_summary_counts_steps_unique_and_shared_nodes() -> None:
    g = compile_(
        fleet(
            app("a", ("flask",), "/src/a"),
            app("b", ("flask",), "/src/b"),
            app("c", ("django",), "/src/c"),
        )
    )
    s = g.summary()
    assert (s.apps, s.steps) == (3, 12)
    # base, python, flask, django, 3 sources
    assert s.unique == 7
    assert s.shared == 3  # base, python, flask
    assert str(s) == "3 apps, 12 steps -> 7 unique layer nodes, 3 shared by 2+ apps"


def test_editing_one_source_changes_only_that_apps_source_node() -> None:
    before = compile_(fleet(app("a", ("flask",), "/src/a"), app("b", ("flask",), "/src/b")))

    def edited(copy: Copy) -> str:
        return "sha256:" + "e" * 64 if copy.context == "/src/a" else content_digest(copy)

    after = compile_(fleet(app("a", ("flask",), "/src/a"), app("b", ("flask",), "/src/b")), edited)
    assert set(before.graph.nodes) ^ set(after.graph.nodes) == {
        before.images["app.a"].nodes[-1],
        after.images["app.a"].nodes[-1],
    }
    assert before.images["app.b"].nodes == after.images["app.b"].nodes


def test_metadata_makes_no_node_but_feeds_later_run_keys() -> None:
    def with_env(value: str) -> ImageDef:
        return ImageDef(
            "image.x",
            BaseRef("store", "debian:bookworm"),
            (Meta("env", (("MODE", value),)), Run("make")),
            tags=("x:1",),
        )

    one = compile_(Fleet({"image.x": with_env("a")}))
    two = compile_(Fleet({"image.x": with_env("b")}))
    assert len(one.images["image.x"].nodes) == 2
    assert one.images["image.x"].nodes[-1] != two.images["image.x"].nodes[-1]
    run = one.node(one.images["image.x"].nodes[-1])
    assert ("MODE", "a") in run.env


def test_metadata_after_the_last_layer_does_not_change_layer_keys() -> None:
    a = app("a", ("flask",), "/src/a")
    b = lower_app(
        AppFields(
            id="app.a",
            base=BaseRef("block", "image.python"),
            pip=("flask",),
            source="/src/a",
            workdir="/opt/source-code",
            env=(("OTHER", "1"),),
            entrypoint=("gunicorn",),
        )
    )
    assert compile_(fleet(a)).images["app.a"].nodes == compile_(fleet(b)).images["app.a"].nodes


def test_labels_names_and_locations_stay_out_of_keys() -> None:
    plain = ImageDef("image.x", BaseRef("store", "debian:bookworm"), (Run("make"),), ("x:1",))
    located = ImageDef(
        "image.y",
        BaseRef("store", "debian:bookworm", Location("other.hcl", 9, 9)),
        (Run("make", loc=Location("specs/y.hcl", 3, 3)),),
        ("y:1",),
    )
    g = compile_(Fleet({"image.x": plain, "image.y": located}))
    assert g.images["image.x"].nodes == g.images["image.y"].nodes
    assert g.apps_of(g.images["image.x"].nodes[-1]) == {"image.x", "image.y"}


def test_unresolved_base_is_flagged_and_keyed_by_reference() -> None:
    g = compile_(fleet(app("a", ("flask",), "/src/a")), bases={})
    base = g.node(g.images["app.a"].nodes[0])
    assert base.kind == "base" and not base.resolved
    assert g.summary().unresolved == ("debian:bookworm",)
    resolved = compile_(fleet(app("a", ("flask",), "/src/a")))
    assert resolved.images["app.a"].nodes[0] != g.images["app.a"].nodes[0]


def test_base_config_is_inherited_and_seen_by_run_steps() -> None:
    g = compile_(fleet(app("a", ("flask",), "/src/a")))
    plan = g.images["app.a"]
    pip = g.node(plan.nodes[2])
    assert dict(pip.env)["PATH"] == "/usr/bin:/bin"
    assert dict(pip.env)["PYTHONUNBUFFERED"] == "1"
    cfg = plan.config.to_oci()
    assert cfg["Env"] == ["PATH=/usr/bin:/bin", "PYTHONUNBUFFERED=1", "SERVICE=a"]
    assert cfg["Entrypoint"] == ["flask", "run"]
    assert cfg["WorkingDir"] == "/opt/source-code"


def test_copy_from_another_image_depends_on_its_top_node() -> None:
    builder = ImageDef("app.x/build", BaseRef("scratch", "scratch"), (Run("make"),))
    final = ImageDef(
        "app.x",
        BaseRef("scratch", "scratch"),
        (Copy(("/out",), "/bin/", from_image="app.x/build"),),
        is_app=True,
    )
    g = compile_(Fleet({"app.x": final, "app.x/build": builder}))
    copy_key = g.images["app.x"].nodes[-1]
    build_key = g.images["app.x/build"].nodes[-1]
    assert g.node(copy_key).copy_from == build_key
    assert g.graph.has_edge(build_key, copy_key)
    assert g.apps_of(build_key) == {"app.x"}
    assert g.closure(["app.x"]) == {copy_key, build_key}


def test_history_has_one_entry_per_step_and_marks_metadata_empty() -> None:
    g = compile_(fleet(app("a", ("flask",), "/src/a")))
    hist = g.images["app.a"].history
    non_empty = [h for h in hist if not h.empty_layer]
    assert len(non_empty) == len(BASE.diff_ids) + 3  # base layer, python, pip, source
    assert any(h.created_by.startswith("ENTRYPOINT") and h.empty_layer for h in hist)


@given(st.permutations(["flask", "requests", "redis", "pymysql", "gunicorn"]))
def test_pip_node_key_is_stable_under_package_permutation(packages: list[str]) -> None:
    ref = compile_(fleet(app("a", ("flask", "gunicorn", "pymysql", "redis", "requests"), "/s")))
    g = compile_(fleet(app("a", tuple(packages), "/s")))
    assert g.images["app.a"].nodes == ref.images["app.a"].nodes


@given(st.permutations(["a", "b", "c", "d"]))
def test_keys_are_stable_under_permutation_of_image_order(names: list[str]) -> None:
    apps = [app(n, ("flask",) if n < "c" else ("django",), f"/src/{n}") for n in names]
    ref = compile_(fleet(*sorted(apps, key=lambda d: d.id)))
    g = compile_(fleet(*apps))
    assert set(g.graph.nodes) == set(ref.graph.nodes)
    for image_id, plan in ref.images.items():
        assert g.images[image_id].nodes == plan.nodes


def test_scheduler_queries_agree_with_networkx() -> None:
    import networkx as nx

    builder = ImageDef("app.x/build", BaseRef("scratch", "scratch"), (Run("make"),))
    final = ImageDef(
        "app.x",
        BaseRef("store", "debian:bookworm"),
        (Run("true"), Copy(("/out",), "/bin/", from_image="app.x/build")),
        is_app=True,
    )
    g = compile_(fleet(app("a", ("flask",), "/src/a"), final, builder))
    assert g.order() == list(nx.lexicographical_topological_sort(g.graph))
    for key in g.nodes:
        assert set(g.predecessors(key)) == set(g.graph.predecessors(key))
    assert g.closure([]) == set()
    top = g.images["app.x"].nodes[-1]
    assert g.closure(["app.x"]) == nx.ancestors(g.graph, top) | {top}
    assert g.graph.nodes[top]["apps"] == {"app.x"}
