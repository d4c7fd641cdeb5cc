"""Dockerfile front end: case files under tests/cases/dockerfiles/, plus inline tables.

Good cases: ``<name>.json`` holds the build args and the expected ImageDefs (steps
written compactly, see ``_plain``) for ``<name>.Dockerfile`` (or the file named by
its "dockerfile" key). Error cases: ``errors/<name>.Dockerfile`` whose first line is
``# expect: <the exact one-line message>`` with ``{path}`` and ``{context}``
placeholders. All of them use ``cases/dockerfiles/context`` as the build context.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import Location, SpecError
from pipeline.model import Copy, ImageDef, Meta, Run
from pipeline.oci import platform as oci_platform
from pipeline.oci.config import DEFAULT_PATH
from pipeline.spec.dockerfile import load_dockerfile
from pipeline.spec.dockerwords import expand, split_flags, split_words

CASES = Path(__file__).parent / "cases" / "dockerfiles"
CONTEXT = CASES / "context"
SPEC_LOC = Location("specs/fleet.hcl", 7, 3)
TAGS = ("acme/t:1",)


def _load(path: Path, build_args: dict[str, str] | None = None, context: Path = CONTEXT):
    return load_dockerfile(path, "app.t", context, build_args or {}, TAGS, SPEC_LOC)


def _plain(image: ImageDef, path: Path) -> dict[str, Any]:
    """An ImageDef as the compact JSON the case files hold; checks every location."""
    assert image.loc is not None and image.loc.file == str(path)
    assert image.base.loc == image.loc
    steps: list[dict[str, Any]] = []
    for step in image.steps:
        assert step.loc is not None and step.loc.file == str(path) and step.loc.col == 1
        out: dict[str, Any]
        if isinstance(step, Run):
            cmd = step.command
            out = {"run": cmd if isinstance(cmd, str) else list(cmd)}
            if step.network != "default":
                out["network"] = step.network
            if step.mounts:
                out["mounts"] = [[m.type, m.target, m.id] for m in step.mounts]
            if step.env:
                out["env"] = [list(p) for p in step.env]
        elif isinstance(step, Copy):
            out = {"copy": list(step.sources), "dest": step.dest}
            if step.from_image is not None:
                out["from"] = step.from_image
            for name in ("chown", "chmod"):
                if getattr(step, name) is not None:
                    out[name] = getattr(step, name)
            if step.context:
                assert step.context == str(CONTEXT)
                out["context"] = "<context>"
            if step.ignore:
                out["ignore"] = list(step.ignore)
        else:
            assert isinstance(step, Meta)
            value = step.value
            if isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out = {"meta": step.field, "value": value}
        out["line"] = step.loc.line
        steps.append(out)
    return {
        "id": image.id,
        "base": [image.base.kind, image.base.ref],
        "is_app": image.is_app,
        "tags": list(image.tags),
        "line": image.loc.line,
        "steps": steps,
    }


GOOD = sorted(CASES.glob("*.json"))


@pytest.mark.parametrize("case", GOOD, ids=[c.stem for c in GOOD])
def test_good_case(case: Path) -> None:
    spec = json.loads(case.read_text())
    path = CASES / spec.get("dockerfile", case.stem + ".Dockerfile")
    images = _load(path, spec["build_args"])
    assert [_plain(i, path) for i in images] == spec["images"]


BAD = sorted((CASES / "errors").glob("*.Dockerfile"))


@pytest.mark.parametrize("case", BAD, ids=[c.stem for c in BAD])
def test_bad_case(case: Path) -> None:
    first = case.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{case} lacks its '# expect:' line"
    expected = first.removeprefix("# expect: ")
    expected = expected.replace("{path}", str(case)).replace("{context}", str(CONTEXT))
    with pytest.raises(SpecError) as info:
        _load(case)
    assert str(info.value) == expected
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("word", ["FROBNICATE", "FETCH"])
def test_unsupported_instruction_names_its_line(tmp_path: Path, word: str) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(f"FROM alpine\nRUN true\n{word.lower()} something here\nRUN false\n")
    with pytest.raises(SpecError) as info:
        _load(path)
    assert str(info.value) == f'{path}:3:1: app "t": unsupported instruction "{word}"'


def test_missing_dockerfile_is_located_at_the_spec(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "Dockerfile"
    with pytest.raises(SpecError) as info:
        _load(path)
    assert str(info.value) == f'specs/fleet.hcl:7:3: app "t": Dockerfile "{path}" not found'


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text("\n\n")
    with pytest.raises(SpecError) as info:
        _load(path)
    assert str(info.value) == f'{path}: app "t": empty Dockerfile (no instructions)'


def test_missing_context_is_located_at_the_copy(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text("FROM alpine\nCOPY a /a\n")
    with pytest.raises(SpecError) as info:
        _load(path, context=tmp_path / "gone")
    assert str(info.value) == (
        f'{path}:2:1: app "t": {tmp_path / "gone"}: build context does not exist'
    )


def test_add_of_a_local_file_is_an_unpacking_copy(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "plain.tar.gz").write_bytes(b"not really a tarball\n")
    path = tmp_path / "Dockerfile"
    path.write_text("FROM alpine\nADD plain.tar.gz /a/\nCOPY plain.tar.gz /b/\n")
    (image,) = _load(path, context=ctx)
    add, copy = image.steps
    assert isinstance(add, Copy) and add.unpack and add.sources == ("plain.tar.gz",)
    assert isinstance(copy, Copy) and not copy.unpack


def scratch_config(loc: Location) -> tuple[Meta, Meta]:
    """What FROM scratch starts with, as in BuildKit: the default PATH and WorkingDir /."""
    return (Meta("env", (("PATH", DEFAULT_PATH),), loc), Meta("workdir", "/", loc))


def test_escape_directive_changes_the_escape_character(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text("# escape=`\nFROM scratch\nENV A=`$HOME B=C:\\dir\nRUN dir `\n  /w\n")
    (image,) = _load(path)
    assert image.steps[:2] == scratch_config(Location(str(path), 2, 1))
    assert image.steps[2] == Meta(
        "env", (("A", "$HOME"), ("B", "C:\\dir")), Location(str(path), 3, 1)
    )
    assert image.steps[3] == Run("dir   /w", loc=Location(str(path), 4, 1))


def test_byte_order_mark_and_lowercase_instructions(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_bytes(b'\xef\xbb\xbffrom scratch\ncmd ["a"]\n')
    (image,) = _load(path)
    assert image.base.kind == "scratch"
    assert [s.value for s in image.steps[2:] if isinstance(s, Meta)] == [("a",)]


def test_platform_flag_of_this_machine_is_accepted_others_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oci_platform.platform, "machine", lambda: "x86_64")
    path = tmp_path / "Dockerfile"
    path.write_text(
        "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETARCH\n"
        "RUN GOARCH=$TARGETARCH go build\nFROM --platform=linux/amd64 scratch\n"
    )
    build, _app = _load(path)
    run = build.steps[0]
    assert isinstance(run, Run) and run.env == (("TARGETARCH", "amd64"),)
    path.write_text("FROM alpine\nFROM --platform=linux/arm64 alpine\n")
    with pytest.raises(SpecError) as info:
        _load(path)
    assert str(info.value) == (
        f'{path}:2:1: app "t": FROM --platform="linux/arm64": cross-platform builds are not '
        'supported (this machine builds "linux/amd64")'
    )


WORD_OF_META = {
    "env": "ENV",
    "labels": "LABEL",
    "workdir": "WORKDIR",
    "user": "USER",
    "entrypoint": "ENTRYPOINT",
    "cmd": "CMD",
    "expose": "EXPOSE",
}


@pytest.mark.parametrize("path", sorted(CASES.glob("*.Dockerfile")), ids=lambda p: p.stem)
def test_every_location_points_at_its_instruction(path: Path) -> None:
    lines = path.read_text().splitlines()
    for image in _load(path):
        assert image.loc is not None
        assert lines[image.loc.line - 1].split()[0].upper() == "FROM"
        for step in image.steps:
            assert step.loc is not None
            word = lines[step.loc.line - 1].split()[0].upper()
            if isinstance(step, Run):
                assert word == "RUN"
            elif isinstance(step, Copy):
                assert word in (("COPY", "ADD") if step.sources else ("WORKDIR",))
            elif step.loc == image.loc:
                assert step in scratch_config(image.loc) and image.base.kind == "scratch"
            else:
                assert word == WORD_OF_META[step.field]


# ---------------------------------------------------------------------------
# the word rules, table-driven

ENV = {"A": "a", "EMPTY": "", "SP": "x y"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$A", "a"),
        ("${A}", "a"),
        ("pre$A-post", "pre" + "a-post"),
        ("${A}b", "ab"),
        ("$Ab", ""),  # the name is "Ab"
        ("$UNSET", ""),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("${A:-d}", "a"),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET:+alt}", ""),
        ("${UNSET:-$A}", "a"),
        ("${UNSET:-${A}x}", "ax"),
        ("\\$A", "$A"),
        ("'$A'", "$A"),
        ('"$A"', "a"),
        ('"\\$A"', "$A"),
        ('"a\\b"', "a\\b"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("a\\ b", "a b"),
        ("$SP", "x y"),
        ("$", "$"),
        ("a$", "a$"),
        ("$-", "$-"),
        ("cost: $5", "cost: "),
        ("trailing\\", "trailing"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("'open", "unterminated single quote"),
        ('"open', "unterminated double quote"),
        ("${A", "missing '}'"),
        ("${}", "bad substitution"),
        ("${A/x/y}", "unsupported modifier '/'"),
        ("${A:=x}", "unsupported modifier ':='"),
        ("${UNSET?needed}", "UNSET: needed"),
        ("${EMPTY:?}", "EMPTY: is not set"),
    ],
)
def test_expand_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("$", r"\$")):
        expand(text, ENV)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a=1 b=2", ["a=1", "b=2"]),
        ('a="x y" b', ['a="x y"', "b"]),
        ("a='x y'  b", ["a='x y'", "b"]),
        ("a=x\\ y", ["a=x\\ y"]),
        ('a="q\\"uote d"', ['a="q\\"uote d"']),
        ('e=""', ['e=""']),
        ("", []),
    ],
)
def test_split_words(text: str, words: list[str]) -> None:
    assert split_words(text) == words


@pytest.mark.parametrize(
    ("text", "flags", "rest"),
    [
        ("echo hi", [], "echo hi"),
        ("--network=none echo", [("network", "none")], "echo"),
        ("--link  --from=a x y", [("link", None), ("from", "a")], "x y"),
        ('--mount="type=cache,target=/a b" run', [("mount", "type=cache,target=/a b")], "run"),
        ("-- --not-a-flag", [], "--not-a-flag"),
        ("  -x", [], "-x"),
    ],
)
def test_split_flags(text: str, flags: list[tuple[str, str | None]], rest: str) -> None:
    assert split_flags(text) == (flags, rest)
