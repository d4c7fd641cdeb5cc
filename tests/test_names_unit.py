"""The pure rules of pipeline.names: stored ids, the lookup order, fleet names."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import names
from pipeline.errors import UsageError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("shop/app.web", ("shop", "app.web")),
        ("shop/image.python", ("shop", "image.python")),
        ("app.web", ("", "app.web")),
        ("shop/app.legacy/build", ("shop", "app.legacy/build")),
        ("acme/web:1", None),
        ("busybox:latest", None),
        ("127.0.0.1:5000/team/web:1", None),
    ],
)
def test_split_id(name: str, expected: tuple[str, str] | None) -> None:
    assert names.split_id(name) == expected


def test_lookup_order_prefers_the_name_then_the_current_fleet() -> None:
    assert names.candidates("web", "shop") == [
        "web",
        "shop/app.web",
        "shop/image.web",
        "app.web",
        "image.web",
    ]
    assert names.candidates("other/web", "shop")[:2] == ["other/web", "other/app.web"]
    assert names.candidates("app.web", None) == ["app.web"]
    assert names.candidates("bee/app.web", "shop") == ["bee/app.web"]


def test_other_fleets_and_short_names() -> None:
    stored = ["a/app.web", "b/app.web", "b/app.api", "web:1", "app.web"]
    assert names.in_other_fleets("web", stored) == ["a/app.web", "b/app.web"]
    assert names.short("a/app.web", "a") == "web"
    assert names.short("a/app.web", "b") == "a/web"
    assert names.short("a/image.py", "a") == "image.py"
    assert names.short("web:1", "a") == "web:1"
    assert "say which as FLEET/web" in str(names.ambiguous("web", ["a/app.web", "b/app.web"]))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/src/shop/specs", "shop"),
        ("/src/shop/specs/web.hcl", "shop"),
        ("/src/My Shop/fleet", "fleet"),
        ("/src/My Shop/specs", "my-shop"),
        ("/specs", "default"),
    ],
)
def test_default_fleet_name(path: str, expected: str) -> None:
    assert names.default_fleet_name(Path(path)) == expected


def test_fleet_names_and_new_names_are_checked() -> None:
    assert names.check_fleet_name("shop-1") is None
    assert "invalid fleet name" in str(names.check_fleet_name("Shop"))
    names.check_new_name("registry.example.com/team/web:1.2")
    for bad in ("shop/app.web", "app.web", "image.x", "", "a b", "x@sha256:00"):
        with pytest.raises(UsageError):
            names.check_new_name(bad)
