"""Loading fleets from spec directories: variables, locals, inherits, matrix, groups,
step order, paths, and the bad-spec case files (one parametrised test)."""

from __future__ import annotations

import dataclasses
import shutil
import sys
import types
from collections.abc import Mapping
from pathlib import Path

import pytest

from pipeline.errors import Location, SpecError
from pipeline.model import BaseRef, Copy, Fleet, ImageDef, Meta, Mount, Run
from pipeline.spec.loader import load_fleet
from pipeline.spec.lower import APT_MOUNTS, APT_TEMPLATE, PIP_TEMPLATE, AppFields, lower_app

CASES = Path(__file__).parent / "cases" / "bad_specs"


def write(root: Path, files: Mapping[str, str]) -> Path:
    """Write ``files`` (relative path -> text) under ``root/specs``; return that dir."""
    specs = root / "specs"
    for name, text in files.items():
        path = specs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return specs


def load(
    tmp_path: Path,
    text: str,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    **extra: str,
) -> Fleet:
    specs = write(tmp_path, {"main.hcl": text, **extra})
    return load_fleet(specs, overrides, environ)


def unlocated(image: ImageDef) -> list[object]:
    """The steps without their locations (which say where, not what)."""
    return [dataclasses.replace(s, loc=None) for s in image.steps]


def meta(image: ImageDef) -> list[tuple[str, object]]:
    return [(s.field, s.value) for s in image.steps if isinstance(s, Meta)]


# --------------------------------------------------------------------------- variables

VARIABLES = """
variable "SUITE" { default = "bookworm" }
variable "REPLICAS" { default = 2 }
variable "DEBUG" {
  type    = bool
  default = false
}
variable "EXTRA" {
  type    = list(string)
  default = []
}
variable "LABELS" {
  type    = map(string)
  default = {}
}
image "base" {
  from   = "debian:${var.SUITE}"
  tags   = concat(["base:${var.REPLICAS * 2}", "debug:${var.DEBUG}"], var.EXTRA)
  labels = var.LABELS
}
"""


def test_variable_defaults(tmp_path: Path) -> None:
    image = load(tmp_path, VARIABLES).images["image.base"]
    assert image.base == BaseRef("store", "debian:bookworm", image.base.loc)
    assert image.tags == ("base:4", "debug:false")
    assert meta(image) == []  # an empty labels map makes no step


def test_environment_overrides_default_and_set_overrides_environment(tmp_path: Path) -> None:
    env = {"SUITE": "trixie", "REPLICAS": "5", "DEBUG": "true", "UNRELATED": "x"}
    image = load(tmp_path, VARIABLES, environ=env).images["image.base"]
    assert image.base.ref == "debian:trixie"
    assert image.tags == ("base:10", "debug:true")
    image = load(tmp_path, VARIABLES, {"SUITE": "sid", "REPLICAS": "1.5"}, env).images["image.base"]
    assert image.base.ref == "debian:sid"
    assert image.tags == ("base:3", "debug:true")


def test_list_and_map_variables_take_json(tmp_path: Path) -> None:
    sets = {"EXTRA": '["a:1", "b:2"]', "LABELS": '{"team": "web"}'}
    image = load(tmp_path, VARIABLES, sets).images["image.base"]
    assert image.tags[-2:] == ("a:1", "b:2")
    assert meta(image) == [("labels", (("team", "web"),))]


def test_environ_none_reads_no_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUITE", "from-os-environ")
    assert load(tmp_path, VARIABLES).images["image.base"].base.ref == "debian:bookworm"


def test_required_variable_set_from_environment(tmp_path: Path) -> None:
    text = 'variable "TAG" {}\nimage "x" { from = "debian:${var.TAG}" }\n'
    fleet = load(tmp_path, text, environ={"TAG": "12"})
    assert fleet.images["image.x"].base.ref == "debian:12"


# --------------------------------------------------------------------------- locals


def test_locals_use_variables_other_locals_and_other_files(tmp_path: Path) -> None:
    fleet = load(
        tmp_path,
        """
        variable "V" { default = "1.0" }
        locals {
          base = "debian:${local.suite}"
          pkgs = [for p in local.names : "${p}==${var.V}"]
        }
        image "x" {
          from = local.base
          tags = local.pkgs
        }
        """,
        **{"more.hcl": 'locals {\n  suite = "bookworm"\n  names = ["b", "a"]\n}\n'},
    )
    image = fleet.images["image.x"]
    assert image.base.ref == "debian:bookworm"
    assert image.tags == ("b==1.0", "a==1.0")
    assert fleet.files == (
        str(tmp_path / "specs" / "main.hcl"),
        str(tmp_path / "specs" / "more.hcl"),
    )


# --------------------------------------------------------------------------- images

STEPS = """
image "python" {
  from       = "debian:bookworm"
  cmd        = ["python3"]
  entrypoint = "tini --"
  labels     = { b = "2", a = "1" }
  expose     = [8080, "53/udp"]
  user       = "app"
  env        = { Z = "last", A = 1 }
  workdir    = "/srv"
  run {
    command = "apt-get update"
  }
  env {
    PIP_NO_CACHE = "1"
  }
  copy {
    src  = ["etc/pip.conf", "etc/extra.conf"]
    dest = "/etc/"
  }
  workdir {
    path = "/opt"
  }
  run {
    command = ["pip", "install", "flask"]
    network = "none"
    mount {
      type   = "cache"
      target = "/root/.cache/pip"
    }
    mount {
      type   = "secret"
      target = "/run/secrets/token"
      source = "secrets/token"
    }
  }
  user {
    name = "nobody"
  }
  copy {
    from  = image.builder
    src   = "/out"
    dest  = "/usr/local/bin/"
    chmod = "0755"
    chown = "1000:1000"
  }
}

image "builder" {
  from = "oci:layouts/builder"
  tags = ["acme/builder:1"]
}
"""


def test_image_steps_keep_source_order_then_metadata(tmp_path: Path) -> None:
    fleet = load(tmp_path, STEPS)
    specs = tmp_path / "specs"
    image = fleet.images["image.python"]
    kinds = [type(s).__name__ + (f":{s.field}" if isinstance(s, Meta) else "") for s in image.steps]
    assert kinds == [
        "Run",
        "Meta:env",
        "Copy",
        "Meta:workdir",
        "Run",
        "Meta:user",
        "Copy",
        # block-level metadata after the steps, in a fixed order
        "Meta:workdir",
        "Meta:env",
        "Meta:user",
        "Meta:expose",
        "Meta:labels",
        "Meta:entrypoint",
        "Meta:cmd",
    ]
    run1, env, copy1, _, run2, _, copy2, *_ = image.steps
    assert run1 == Run("apt-get update", loc=Location(str(specs / "main.hcl"), 11, 3))
    assert env == Meta("env", (("PIP_NO_CACHE", "1"),), env.loc)
    assert copy1 == Copy(
        sources=("etc/pip.conf", "etc/extra.conf"),
        dest="/etc/",
        context=str(specs),
        loc=copy1.loc,
    )
    assert isinstance(run2, Run)
    assert run2.command == ("pip", "install", "flask")
    assert run2.network == "none"
    assert run2.mounts == (
        Mount("cache", "/root/.cache/pip", id="/root/.cache/pip"),
        Mount("secret", "/run/secrets/token", source=str(specs / "secrets" / "token")),
    )
    assert copy2 == Copy(
        sources=("/out",),
        dest="/usr/local/bin/",
        from_image="image.builder",
        chown="1000:1000",
        chmod="0755",
        loc=copy2.loc,
    )
    assert meta(image)[-7:] == [
        ("workdir", "/srv"),
        ("env", (("A", "1"), ("Z", "last"))),
        ("user", "app"),
        ("expose", ("8080/tcp", "53/udp")),
        ("labels", (("a", "1"), ("b", "2"))),
        ("entrypoint", ("/bin/sh", "-c", "tini --")),
        ("cmd", ("python3",)),
    ]
    builder = fleet.images["image.builder"]
    assert builder.base == BaseRef(
        "oci-layout", str(specs / "layouts" / "builder"), builder.base.loc
    )
    assert fleet.outputs() == ("image.builder",)


def test_copy_context_is_resolved_and_its_ignore_file_read(tmp_path: Path) -> None:
    fleet = load(
        tmp_path,
        """
        image "x" {
          from = "scratch"
          copy {
            src     = "."
            dest    = "/app/"
            context = "../ctx"
          }
        }
        """,
        **{"../ctx/.dockerignore": "# comment\n*.pyc\n\n.git\n"},
    )
    (copy,) = fleet.images["image.x"].steps
    assert isinstance(copy, Copy)
    assert copy.context == str(tmp_path / "ctx")
    assert copy.ignore == ("*.pyc", ".git")
    assert fleet.images["image.x"].base.kind == "scratch"


def test_from_block_reference_and_registry_ref(tmp_path: Path) -> None:
    fleet = load(
        tmp_path,
        """
        image "a" { from = "registry.local:5000/debian:12" }
        image "b" { from = image.a }
        app "c" { from = image.b }
        app "d" { from = app.c }
        """,
    )
    assert fleet.images["image.a"].base.kind == "registry"
    assert fleet.images["image.b"].base.ref == "image.a"
    assert fleet.images["app.c"].base == BaseRef(
        "block", "image.b", Location(str(tmp_path / "specs" / "main.hcl"), 4, 19)
    )
    assert fleet.images["app.d"].base.ref == "app.c"
    assert list(fleet.images) == ["app.c", "app.d", "image.a", "image.b"]


# --------------------------------------------------------------------------- apps


def test_app_lowers_through_lower_app(tmp_path: Path) -> None:
    fleet = load(
        tmp_path,
        """
        app "web" {
          from       = "debian:bookworm"
          apt        = ["libpq5", "curl"]
          pip        = ["flask"]
          source     = "services/web"
          env        = { SERVICE = "web" }
          entrypoint = ["flask", "run"]
          expose     = [5000]
          tags       = ["acme/web:1"]
          description = "not part of any key"
        }
        """,
        **{"services/web/app.py": "print('hi')\n", "services/web/.pipelineignore": "*.pyc\n"},
    )
    specs = tmp_path / "specs"
    path = str(specs / "main.hcl")
    expected = lower_app(
        AppFields(
            id="app.web",
            base=BaseRef("store", "debian:bookworm", Location(path, 3, 11)),
            apt=("libpq5", "curl"),
            pip=("flask",),
            source=str(specs / "services" / "web"),
            ignore=("*.pyc",),
            env=(("SERVICE", "web"),),
            expose=("5000/tcp",),
            entrypoint=("flask", "run"),
            tags=("acme/web:1",),
            loc=Location(path, 2, 9),
            apt_loc=Location(path, 4, 11),
            pip_loc=Location(path, 5, 11),
            source_loc=Location(path, 6, 11),
        )
    )
    assert fleet.images["app.web"] == expected
    assert fleet.images["app.web"].is_app


def test_same_packages_in_any_order_lower_to_equal_steps(tmp_path: Path) -> None:
    fleet = load(
        tmp_path,
        """
        app "a" {
          from = "debian:bookworm"
          apt  = ["curl", "git"]
          pip  = ["requests==2.32.3", "flask==3.0.3"]
        }
        app "b" {
          from = "debian:bookworm"
          apt  = ["git", "curl", "git"]
          pip  = ["flask==3.0.3", "requests==2.32.3"]
        }
        """,
    )
    a, b = fleet.images["app.a"], fleet.images["app.b"]
    assert unlocated(a) == unlocated(b)
    assert isinstance(a.steps[0], Run) and isinstance(a.steps[1], Run)
    assert a.steps[0].command == APT_TEMPLATE.format(packages="curl git")
    # apt's lists and .debs go to cache mounts, never into the layer
    assert a.steps[0].mounts == APT_MOUNTS
    assert {(m.type, m.target) for m in APT_MOUNTS} == {
        ("cache", "/var/lib/apt/lists"),
        ("cache", "/var/cache/apt"),
    }
    assert a.steps[1].command == PIP_TEMPLATE.format(packages="flask==3.0.3 requests==2.32.3")


def test_null_means_unset(tmp_path: Path) -> None:
    fleet = load(
        tmp_path,
        """
        variable "USER" { default = "" }
        app "a" {
          from = "scratch"
          user = var.USER == "" ? null : var.USER
          cmd  = "serve"
        }
        """,
    )
    assert meta(fleet.images["app.a"]) == [("cmd", ("/bin/sh", "-c", "serve"))]


INHERITS = """
app "base" {
  from    = "debian:bookworm"
  apt     = ["curl"]
  pip     = ["flask"]
  env     = { A = "base", B = "base" }
  labels  = { team = "core" }
  workdir = "/srv"
  tags    = ["base:1"]
}

app "extra" {
  from   = "debian:trixie"
  env    = { B = "extra", C = "extra" }
  user   = "extra"
}

app "web" {
  inherits = [app.base, "extra"]
  pip      = ["django"]
  env      = { C = "web" }
  tags     = ["web:1"]
}

app "child" {
  inherits = [app.web]
  labels   = { tier = "front" }
}
"""


def test_inherits_merges_maps_and_replaces_everything_else(tmp_path: Path) -> None:
    fleet = load(tmp_path, INHERITS)
    web = fleet.images["app.web"]
    assert web.base.ref == "debian:trixie"  # the later parent wins
    runs = [s.command for s in web.steps if isinstance(s, Run)]
    assert runs == [
        APT_TEMPLATE.format(packages="curl"),  # inherited from base
        PIP_TEMPLATE.format(packages="django"),  # replaced whole, not merged
    ]
    assert meta(web) == [
        ("workdir", "/srv"),
        ("env", (("A", "base"), ("B", "extra"), ("C", "web"))),
        ("user", "extra"),
        ("labels", (("team", "core"),)),
    ]
    assert web.tags == ("web:1",)
    child = fleet.images["app.child"]
    assert unlocated(child)[:2] == unlocated(web)[:2]
    assert ("labels", (("team", "core"), ("tier", "front"))) in meta(child)
    assert child.tags == ("web:1",)


def test_inherited_base_location_points_at_the_parent(tmp_path: Path) -> None:
    fleet = load(tmp_path, INHERITS)
    assert fleet.images["app.child"].base.loc == Location(
        str(tmp_path / "specs" / "main.hcl"), 13, 3
    )


# --------------------------------------------------------------------------- matrix

MATRIX = """
app "py" {
  from   = "python:${matrix.py}-${matrix.flavor}"
  matrix = { py = ["3.11", "3.12"], flavor = ["slim", "Full Size"] }
  env    = { PY = matrix.py }
}

app "web" {
  from   = "debian:bookworm"
  matrix = { region = ["eu", "us"] }
  name   = "web-${upper(matrix.region)}"
  tags   = ["acme/web-${matrix.region}:1"]
}

group "all" {
  targets = [app.web, "py"]
}
"""


def test_matrix_makes_one_app_per_combination(tmp_path: Path) -> None:
    fleet = load(tmp_path, MATRIX)
    # default names: block name + values in sorted key order (flavor, py), sanitised
    assert sorted(fleet.images) == [
        "app.py-full-size-3.11",
        "app.py-full-size-3.12",
        "app.py-slim-3.11",
        "app.py-slim-3.12",
        "app.web-eu",
        "app.web-us",
    ]
    one = fleet.images["app.py-slim-3.12"]
    assert one.base.ref == "python:3.12-slim"
    assert meta(one) == [("env", (("PY", "3.12"),))]
    assert fleet.images["app.web-us"].tags == ("acme/web-us:1",)
    # a matrix block in a group stands for all its apps, in matrix order
    assert fleet.groups["all"] == (
        "app.web-eu",
        "app.web-us",
        "app.py-slim-3.11",
        "app.py-slim-3.12",
        "app.py-full-size-3.11",
        "app.py-full-size-3.12",
    )


def test_matrix_apps_can_be_referenced_by_name(tmp_path: Path) -> None:
    fleet = load(tmp_path, MATRIX + 'app "tool" { from = app.web-eu }\n')
    assert fleet.images["app.tool"].base.ref == "app.web-eu"


def test_matrix_child_inherits_a_plain_parent(tmp_path: Path) -> None:
    fleet = load(
        tmp_path,
        """
        app "base" {
          from = "debian:bookworm"
          env  = { A = "1" }
        }
        app "svc" {
          inherits = [app.base]
          matrix   = { region = ["eu", "us"] }
          env      = { REGION = matrix.region }
        }
        """,
    )
    assert meta(fleet.images["app.svc-us"]) == [("env", (("A", "1"), ("REGION", "us")))]


# --------------------------------------------------------------------------- groups


def test_groups_include_groups_and_dedupe_in_order(tmp_path: Path) -> None:
    fleet = load(
        tmp_path,
        """
        image "base" { from = "scratch" }
        app "a" { from = image.base }
        app "b" { from = image.base }
        group "inner" { targets = [app.b, "image.base"] }
        group "outer" { targets = ["a", group.inner, app.a, "inner"] }
        """,
    )
    assert fleet.groups == {
        "inner": ("app.b", "image.base"),
        "outer": ("app.a", "app.b", "image.base"),
    }


# --------------------------------------------------------------------------- dockerfile


def test_dockerfile_app_calls_the_dockerfile_front_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[object, ...]] = []

    def fake_load(
        path: Path,
        app_id: str,
        context: Path,
        build_args: Mapping[str, str],
        tags: tuple[str, ...],
        loc: Location,
    ) -> tuple[ImageDef, ...]:
        calls.append((path, app_id, context, dict(build_args), tags, loc))
        builder = ImageDef(f"{app_id}/build", BaseRef("store", "golang:1"))
        final = ImageDef(app_id, BaseRef("block", f"{app_id}/build"), tags=tags, is_app=True)
        return builder, final

    fake = types.ModuleType("pipeline.spec.dockerfile")
    fake.load_dockerfile = fake_load  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pipeline.spec.dockerfile", fake)
    fleet = load(
        tmp_path,
        """
        app "base" {
          dockerfile = "legacy/Dockerfile"
          args       = { A = "1", B = "1" }
          env        = { E = "1" }
        }
        app "legacy" {
          inherits = [app.base]
          args     = { B = "2" }
          tags     = ["acme/legacy:1"]
        }
        """,
        **{"legacy/Dockerfile": "FROM scratch\n"},
    )
    specs = tmp_path / "specs"
    legacy_call = [c for c in calls if c[1] == "app.legacy"]
    assert legacy_call == [
        (
            specs / "legacy" / "Dockerfile",
            "app.legacy",
            specs / "legacy",
            {"A": "1", "B": "2"},
            ("acme/legacy:1",),
            Location(str(specs / "main.hcl"), 3, 11),
        )
    ]
    assert "app.legacy/build" in fleet.images
    assert meta(fleet.images["app.legacy"]) == [("env", (("E", "1"),))]


# --------------------------------------------------------------------------- the example fleet


def test_the_example_fleet_loads() -> None:
    specs = Path(__file__).parent.parent / "specs"
    assert specs.is_dir(), "the example fleet in specs/ is part of the repository"
    fleet = load_fleet(specs, {}, {})
    apps = [i for i, d in fleet.images.items() if d.is_app]
    assert len(apps) >= 8
    assert fleet == load_fleet(specs, {}, {})


# --------------------------------------------------------------------------- bad specs


def _cases() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.suffix == ".hcl" or p.is_dir())


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.stem)
def test_bad_spec(case: Path, tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    if case.is_dir():
        shutil.copytree(case, specs)
    else:
        specs.mkdir()
        shutil.copy(case, specs / case.name)
    files = sorted(specs.glob("*.hcl"))
    header = files[0].read_text().splitlines()[0]
    assert header.startswith("# expect: "), f"{case}: the first line must be '# expect: ...'"
    expected = header.removeprefix("# expect: ").replace("{dir}", str(specs))
    overrides = {}
    for f in files:
        for line in f.read_text().splitlines():
            if line.startswith("# set: "):
                name, _, value = line.removeprefix("# set: ").partition("=")
                overrides[name] = value
    with pytest.raises(SpecError) as info:
        load_fleet(specs, overrides, {})
    assert str(info.value) == expected
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_parse_cache_is_used_for_unchanged_files(tmp_path: Path) -> None:
    class Cache(dict[str, bytes]):
        def put(self, key: str, data: bytes) -> None:
            self[key] = data

    specs = write(tmp_path, {"a.hcl": VARIABLES, "b.hcl": INHERITS})
    cache = Cache()
    first = load_fleet(specs, parse_cache=cache)
    assert len(cache) == 2
    assert load_fleet(specs, parse_cache=cache) == first == load_fleet(specs)
    assert len(cache) == 2


def test_unused_locals_are_still_checked(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load(tmp_path, 'locals {\n  unused = var.nope\n}\nimage "x" { from = "scratch" }\n')
    where = tmp_path / "specs" / "main.hcl"
    assert str(info.value) == f'{where}:2:12: locals: unknown reference "var.nope"'
