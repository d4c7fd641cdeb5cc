"""Build contexts: COPY selection semantics, hostile sources, digests and the stat cache."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import Location, SpecError, UnsafePathError
from pipeline.fs.context import (
    ContextError,
    Entry,
    check_sources,
    layout,
    looks_like_archive,
    read_ignore,
    select,
)
from pipeline.fs.contexthash import ContextHasher
from pipeline.fs.patterns import glob_regex

Tree = Mapping[str, "str | bytes | tuple[str, str] | None"]
"""path -> file text/bytes, ("link", target), or None for an (empty) directory."""


def make(root: Path, tree: Tree, order: list[str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel in order if order is not None else list(tree):
        value = tree[rel]
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if value is None:
            path.mkdir(exist_ok=True)
        elif isinstance(value, tuple):
            os.symlink(value[1], path)
        elif isinstance(value, bytes):
            path.write_bytes(value)
        else:
            path.write_text(value)
    return root


BASIC: Tree = {
    "a.txt": "a",
    "b.txt": "b",
    "src/main.py": "print()",
    "src/lib/util.py": "x = 1",
    "src/.hidden": "h",
    "docs/readme.md": "r",
    "docs/keep.md": "k",
    "build/out.o": "o",
    "empty": None,
    "link-to-src": ("link", "src"),
    "alias.txt": ("link", "a.txt"),
    ".dockerignore": "build\n",
}


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return make(tmp_path / "ctx", BASIC)


def shape(entries: list[Entry]) -> list[tuple[str, str, bool]]:
    return [(e.rel, e.kind, e.top) for e in entries]


SRC_TREE = [
    (".hidden", "file", False),
    ("lib", "dir", False),
    ("lib/util.py", "file", False),
    ("main.py", "file", False),
]


@pytest.mark.parametrize(
    ("sources", "ignore", "expected"),
    [
        (["a.txt"], [], [("a.txt", "file", True)]),
        (["./a.txt"], [], [("a.txt", "file", True)]),
        (["src/lib/../main.py"], [], [("main.py", "file", True)]),
        (["src"], [], SRC_TREE),
        (["src/"], [], SRC_TREE),
        (["link-to-src"], [], SRC_TREE),
        (["alias.txt"], [], [("alias.txt", "file", True)]),
        (["empty"], [], []),
        (
            ["*.txt"],
            [],
            [("a.txt", "file", True), ("alias.txt", "file", True), ("b.txt", "file", True)],
        ),
        (["[ab].txt"], [], [("a.txt", "file", True), ("b.txt", "file", True)]),
        (["[^a].txt"], [], [("b.txt", "file", True)]),
        (["?.txt"], [], [("a.txt", "file", True), ("b.txt", "file", True)]),
        (["s*/*.py"], [], [("main.py", "file", True)]),
        (["*/lib"], [], [("util.py", "file", False)] * 2),  # via src/ and via link-to-src/
        (  # "**" is just "*"
            ["src/**"],
            [],
            [(".hidden", "file", True), ("util.py", "file", False), ("main.py", "file", True)],
        ),
        (["b.txt", "a.txt"], [], [("b.txt", "file", True), ("a.txt", "file", True)]),
        (["docs"], ["*.md", "!keep.md"], [("keep.md", "file", False)]),
        (["docs"], ["docs", "!docs/keep.md"], [("keep.md", "file", False)]),
        (["src"], ["lib/"], [SRC_TREE[0], SRC_TREE[3]]),  # "lib/" matches at any depth
        (["src"], ["/lib/"], SRC_TREE),  # but not when anchored at the context root
        (["src"], ["src/lib/"], [(".hidden", "file", False), ("main.py", "file", False)]),
        (["src"], [".*"], SRC_TREE[1:]),
    ],
)
def test_select(ctx: Path, sources: list[str], ignore: list[str], expected: list) -> None:
    assert shape(select(ctx, sources, ignore)) == expected


def test_select_whole_context_honours_the_ignore_file(ctx: Path) -> None:
    entries = select(ctx, ["."], read_ignore(ctx))
    assert shape(entries) == [
        (".dockerignore", "file", False),  # the ignore file itself is copyable
        ("a.txt", "file", False),
        ("alias.txt", "symlink", False),  # symlinks in a tree are kept, not followed
        ("b.txt", "file", False),
        ("docs", "dir", False),
        ("docs/keep.md", "file", False),
        ("docs/readme.md", "file", False),
        ("empty", "dir", False),
        ("link-to-src", "symlink", False),
        ("src", "dir", False),
        ("src/.hidden", "file", False),
        ("src/lib", "dir", False),
        ("src/lib/util.py", "file", False),
        ("src/main.py", "file", False),
    ]
    by_rel = {e.rel: e for e in entries}
    assert by_rel["alias.txt"].target == "a.txt"
    assert by_rel["src/main.py"].path == (ctx / "src/main.py").resolve()
    assert by_rel["src/main.py"].size == len("print()")


def test_entry_fields_for_a_symlinked_source(ctx: Path) -> None:
    os.chmod(ctx / "a.txt", 0o640)
    (entry,) = select(ctx, ["alias.txt"], [])
    assert entry == Entry(
        rel="alias.txt", path=(ctx / "a.txt").resolve(), kind="file", mode=0o640, size=1,
        top=True, source="alias.txt",
    )  # fmt: skip


def test_excluded_directory_is_no_entry_but_its_reincluded_file_is(ctx: Path) -> None:
    entries = select(ctx, ["."], ["docs", "!docs/keep.md", ".dockerignore", "build"])
    rels = [e.rel for e in entries]
    assert "docs/keep.md" in rels
    assert "docs" not in rels and "docs/readme.md" not in rels
    assert ".dockerignore" not in rels and "build/out.o" not in rels


def test_special_files_are_skipped(ctx: Path) -> None:
    os.mkfifo(ctx / "src" / "pipe")
    assert shape(select(ctx, ["src"], [])) == SRC_TREE
    with pytest.raises(ContextError) as info:
        select(ctx, ["src/pipe"], [])
    assert str(info.value) == (
        f'{ctx}: COPY source "src/pipe": not a regular file, directory or symlink'
    )


@pytest.mark.parametrize(
    ("source", "ignore", "reason"),
    [
        ("nope.txt", [], "no such file or directory in the build context"),
        ("a.txt/x", [], "no such file or directory in the build context"),
        ("*.rs", [], "no such file or directory in the build context"),
        ("build/out.o", ["build"], "excluded by the context's ignore file"),
        ("build", ["build/"], "excluded by the context's ignore file"),
        ("docs", ["docs", "!docs/nothing"], "excluded by the context's ignore file"),
        ("*.o", ["*.o"], "no such file or directory in the build context"),
        ("[", [], "bad glob pattern '['"),
        ("a[", [], "bad glob pattern 'a['"),
    ],
)
def test_missing_sources(ctx: Path, source: str, ignore: list[str], reason: str) -> None:
    for check in (select, check_sources):
        with pytest.raises(ContextError) as info:
            check(ctx, ["a.txt", source], ignore)
        assert str(info.value) == f'{ctx}: COPY source "{source}": {reason}'
        assert (info.value.context, info.value.source, info.value.reason) == (
            str(ctx),
            source,
            reason,
        )
        assert info.value.exit_code == 2


def test_context_error_can_be_located() -> None:
    err = ContextError("/c", "x", "no such file or directory in the build context")
    located = err.at(Location("Dockerfile", 3, 1), 'app "t"')
    assert str(located) == (
        'Dockerfile:3:1: app "t": COPY source "x": no such file or directory in the build '
        "context (context /c)"
    )


def test_missing_context(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        select(tmp_path / "gone", ["."], [])
    assert str(info.value) == f"{tmp_path / 'gone'}: build context does not exist"


# ---------------------------------------------------------------------------
# hostile sources: refused, and nothing outside the context is opened or listed

_watch: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    watching = _watch is not None and event in ("open", "os.scandir", "os.listdir")
    if watching and args and isinstance(args[0], str | bytes | os.PathLike):
        _watch.append("open " + os.fsdecode(args[0]))


sys.addaudithook(_audit)


@pytest.fixture
def touched(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every path opened, listed (audit events), lstat-ed or readlink-ed meanwhile."""
    global _watch
    _watch = seen = []
    for name in ("lstat", "readlink"):
        real = getattr(os, name)

        def spy(path, *args, _real=real, **kwargs):
            seen.append("stat " + os.fsdecode(path))
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(os, name, spy)
    try:
        yield seen
    finally:
        _watch = None


def _all_inside(touched: list[str], ctx: Path) -> bool:
    """Everything touched lies inside the context; the context's own ancestors may
    have been stat-ed (resolving the context path), never opened or listed."""
    root = str(ctx.resolve())

    def ok(entry: str) -> bool:
        how, path = entry.split(" ", 1)
        inside = path == root or path.startswith(root + os.sep)
        return inside or (how == "stat" and root.startswith(path.rstrip(os.sep) + os.sep))

    return all(ok(e) for e in touched)


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    outside = make(tmp_path / "outside", {"secret": "s3cret", "x": "x"})
    return make(
        tmp_path / "ctx",
        {
            "ok.txt": "ok",
            "sub/inner.txt": "in",
            "link-to-outside": ("link", str(outside)),
            "rel-outside": ("link", "../outside"),
            "sub/up-and-out": ("link", "../../outside/secret"),
            "etc": ("link", "/etc"),
            "loop-a": ("link", "loop-b"),
            "loop-b": ("link", "loop-a"),
            "inside-abs": ("link", str(tmp_path / "ctx" / "sub")),
        },
    )


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("../outside/secret", "leaves the build context"),
        ("sub/../../outside/x", "leaves the build context"),
        ("..", "leaves the build context"),
        ("/etc/passwd", "absolute path; COPY sources are relative to the context"),
        ("/", "absolute path; COPY sources are relative to the context"),
        ("link-to-outside/x", "symlink link-to-outside -> {outside} leaves the build context"),
        ("link-to-outside", "symlink link-to-outside -> {outside} leaves the build context"),
        ("rel-outside/secret", "symlink rel-outside -> ../outside leaves the build context"),
        (
            "sub/up-and-out",
            "symlink sub/up-and-out -> ../../outside/secret leaves the build context",
        ),
        ("etc", "symlink etc -> /etc leaves the build context"),
        ("etc/passwd", "symlink etc -> /etc leaves the build context"),
        ("e*/passwd", "symlink etc -> /etc leaves the build context"),
        ("loop-a", "too many levels of symlinks"),
    ],
)
def test_hostile_sources_are_refused(
    hostile: Path, touched: list[str], source: str, reason: str
) -> None:
    outside = hostile.parent / "outside"
    for check in (select, check_sources):
        with pytest.raises(UnsafePathError) as info:
            check(hostile, [source], [])
        assert info.value.where == str(hostile)
        assert info.value.path == source
        assert info.value.reason == reason.format(outside=outside)
    with pytest.raises(UnsafePathError):
        ContextHasher().digest(hostile, ["ok.txt", source], [])
    ContextHasher().digest(hostile, ["ok.txt", "sub/inner.txt"], [])  # opens two files
    assert sum(p.endswith(".txt") for p in touched) >= 2, "the spies saw nothing"
    assert _all_inside(touched, hostile), touched


def test_links_inside_the_context_may_be_followed(hostile: Path, touched: list[str]) -> None:
    assert shape(select(hostile, ["inside-abs"], [])) == [
        ("inner.txt", "file", False),
        ("up-and-out", "symlink", False),  # kept as a link, not followed
    ]
    assert shape(select(hostile, ["inside-abs/inner.txt"], [])) == [("inner.txt", "file", True)]
    assert touched and _all_inside(touched, hostile), touched


def test_whole_tree_keeps_outward_links_as_links(hostile: Path, touched: list[str]) -> None:
    hasher = ContextHasher()
    hasher.digest(hostile, ["."], [])
    entries = {e.rel: e for e in select(hostile, ["."], [])}
    assert entries["etc"].kind == "symlink" and entries["etc"].target == "/etc"
    assert entries["link-to-outside"].kind == "symlink"
    assert hasher.files_hashed == 2  # ok.txt and sub/inner.txt, nothing else
    assert touched and _all_inside(touched, hostile), touched


def test_a_symlinked_context_subdir_pointing_to_etc(tmp_path: Path, touched: list[str]) -> None:
    ctx = make(tmp_path / "ctx", {"config": ("link", "/etc"), "app.py": "x"})
    for source in ("config", "config/", "config/passwd", "./config/.", "config/../config"):
        with pytest.raises(UnsafePathError):
            select(ctx, [source], [])
    # ".." is resolved lexically first, as Docker does, so this never enters config/
    assert shape(select(ctx, ["config/../app.py"], [])) == [("app.py", "file", True)]
    assert touched and _all_inside(touched, ctx), touched


# ---------------------------------------------------------------------------
# digests


def digest(ctx: Path, sources: list[str] | None = None, ignore: list[str] | None = None) -> str:
    return ContextHasher().digest(ctx, sources or ["."], ignore or [])


def test_digest_is_a_sha256(ctx: Path) -> None:
    d = digest(ctx)
    assert d.startswith("sha256:") and len(d) == 71


def test_digest_ignores_mtimes_owners_and_location(ctx: Path, tmp_path: Path) -> None:
    before = digest(ctx)
    os.utime(ctx / "a.txt", ns=(1, 1))
    os.utime(ctx / "src", ns=(10**18, 10**18))
    assert digest(ctx) == before
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(ctx, elsewhere, symlinks=True)
    assert digest(elsewhere) == before
    if os.geteuid() == 0:
        os.chown(ctx / "a.txt", 1234, 5678)
        assert digest(ctx) == before


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda c: (c / "a.txt").write_text("A"), id="content"),
        pytest.param(lambda c: (c / "a.txt").write_text("a "), id="content-size"),
        pytest.param(lambda c: os.chmod(c / "a.txt", 0o600), id="mode"),
        pytest.param(lambda c: os.chmod(c / "src", 0o700), id="dir-mode"),
        pytest.param(lambda c: os.rename(c / "a.txt", c / "c.txt"), id="rename"),
        pytest.param(lambda c: os.rename(c / "src/main.py", c / "docs/main.py"), id="move"),
        pytest.param(lambda c: (c / "new").mkdir(), id="new-empty-dir"),
        pytest.param(lambda c: (c / "src/lib/util.py").unlink(), id="delete"),
        pytest.param(
            lambda c: ((c / "alias.txt").unlink(), os.symlink("b.txt", c / "alias.txt")),
            id="symlink-target",
        ),
        pytest.param(
            lambda c: ((c / "alias.txt").unlink(), shutil.copy(c / "a.txt", c / "alias.txt")),
            id="symlink-becomes-file",
        ),
    ],
)
def test_digest_changes_with_content(ctx: Path, change) -> None:
    before = digest(ctx)
    change(ctx)
    assert digest(ctx) != before


def test_ignored_changes_do_not_change_the_digest(ctx: Path) -> None:
    ignore = read_ignore(ctx)
    before = digest(ctx, ["."], list(ignore))
    (ctx / "build" / "out.o").write_text("rebuilt")
    (ctx / "build" / "more.o").write_text("more")
    assert digest(ctx, ["."], list(ignore)) == before


def test_source_order_matters_only_where_copy_semantics_do(tmp_path: Path) -> None:
    ctx = make(tmp_path / "c", {"a.txt": "a", "b.txt": "b", "x/f": "from x", "y/f": "from y"})
    assert digest(ctx, ["a.txt", "b.txt"]) == digest(ctx, ["b.txt", "a.txt"])
    assert digest(ctx, ["a.txt", "x"]) == digest(ctx, ["x", "a.txt"])
    # both give rel "f": the later source wins, so the order changes the result
    assert digest(ctx, ["x", "y"]) != digest(ctx, ["y", "x"])
    assert digest(ctx, ["x", "y"]) == digest(ctx, ["y"])


def test_layout_later_source_wins(tmp_path: Path) -> None:
    ctx = make(tmp_path / "c", {"x/f": "1", "y/f": "2", "y/g": "3"})
    final = layout(select(ctx, ["y", "x"], []))
    assert [(e.rel, e.source) for e in final] == [("f", "x"), ("g", "y")]


def test_same_selection_same_digest_different_selection_different(ctx: Path) -> None:
    assert digest(ctx, ["src"]) == digest(ctx, ["link-to-src"])
    assert digest(ctx, ["src"]) != digest(ctx, ["src/lib"])
    assert digest(ctx, ["a.txt"]) != digest(ctx, ["alias.txt"])  # the name differs
    assert digest(ctx, ["empty"]) == digest(make(ctx.parent / "e", {}))


def _create(root: Path, files: dict[str, tuple[bytes, int]], order: list[str]) -> None:
    root.mkdir()
    for rel in order:
        data, mode = files[rel]
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode)


_names = st.sampled_from(["a", "b", "c", "d.txt", "E", "f g", "é"])
_paths = st.lists(_names, min_size=1, max_size=3).map("/".join)


def _no_prefix_clash(paths: list[str]) -> bool:
    return not any(q.startswith(p + "/") for p in paths for q in paths)


@settings(max_examples=60, deadline=None)
@given(
    files=st.dictionaries(
        _paths, st.tuples(st.binary(max_size=40), st.sampled_from([0o644, 0o755, 0o600])),
        min_size=1, max_size=10,
    ).filter(lambda d: _no_prefix_clash(list(d))),
    data=st.data(),
)  # fmt: skip
def test_digest_is_independent_of_creation_order(files: dict, data: st.DataObject) -> None:
    order = data.draw(st.permutations(sorted(files)))
    with tempfile.TemporaryDirectory() as tmp:
        one, two = Path(tmp, "one"), Path(tmp, "two")
        _create(one, files, sorted(files))
        _create(two, files, list(order))
        assert digest(one) == digest(two)
        # naming the files one by one: each lands under its base name, so only
        # clashing base names make the order matter
        names = [p.rsplit("/", 1)[-1] for p in files]
        same = ContextHasher().digest(one, list(order), []) == digest(two, sorted(files))
        assert same or len(set(names)) < len(names)


# ---------------------------------------------------------------------------
# the stat cache


def test_stat_cache_avoids_rereading(ctx: Path, tmp_path: Path) -> None:
    cache = tmp_path / "state" / "context-cache.json"
    first = ContextHasher(cache, racy_window_ns=0)
    d1 = first.digest(ctx, ["."], [])
    files = sum(1 for e in select(ctx, ["."], []) if e.kind == "file")
    assert (first.files_hashed, first.files_cached) == (files, 0)
    assert first.bytes_hashed == sum(e.size for e in select(ctx, ["."], []))
    first.save()

    second = ContextHasher(cache, racy_window_ns=0)
    assert second.digest(ctx, ["."], []) == d1
    assert (second.files_hashed, second.files_cached) == (0, files)

    (ctx / "src" / "main.py").write_text("print('changed')")
    third = ContextHasher(cache, racy_window_ns=0)
    assert third.digest(ctx, ["."], []) != d1
    assert (third.files_hashed, third.files_cached) == (1, files - 1)


def test_stat_cache_sees_a_same_size_rewrite(ctx: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache.json"
    first = ContextHasher(cache, racy_window_ns=0)
    d1 = first.digest(ctx, ["a.txt"], [])
    first.save()
    (ctx / "a.txt").write_text("z")  # same size; new ctime (and inode unchanged)
    os.utime(ctx / "a.txt", ns=(0, 0))
    second = ContextHasher(cache, racy_window_ns=0)
    assert second.digest(ctx, ["a.txt"], []) != d1
    assert second.files_hashed == 1


def test_racily_fresh_files_are_not_trusted(ctx: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache.json"
    first = ContextHasher(cache, racy_window_ns=10**18)  # everything counts as fresh
    first.digest(ctx, ["src"], [])
    first.save()
    second = ContextHasher(cache, racy_window_ns=10**18)
    second.digest(ctx, ["src"], [])
    assert (second.files_hashed, second.files_cached) == (3, 0)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b'{"format": "pipeline-context-stat-cache", "version": 999, "files": {}}',
        b'{"format": "pipeline-context-stat-cache", "version": 1, "files": {"/x": [1]}}',
        b'{"format": "pipeline-context-stat-cache", "version": 1, "files": {"/x": "a"}}',
        b'{"format": "pipeline-context-stat-cache", "version": 1, "files": []}',
        b"\xff\xfe",
    ],
)
def test_corrupt_or_old_cache_starts_empty(ctx: Path, tmp_path: Path, content: bytes) -> None:
    cache = tmp_path / "cache.json"
    cache.write_bytes(content)
    hasher = ContextHasher(cache, racy_window_ns=0)
    assert hasher.digest(ctx, ["src"], []) == digest(ctx, ["src"])
    assert (hasher.files_hashed, hasher.files_cached) == (3, 0)
    hasher.save()
    assert ContextHasher(cache).digest(ctx, ["src"], []) == digest(ctx, ["src"])


def test_save_is_atomic_and_leaves_no_debris(ctx: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    hasher = ContextHasher(state / "cache.json", racy_window_ns=0)
    hasher.save()  # nothing to write yet
    assert not state.exists()
    hasher.digest(ctx, ["."], [])
    hasher.save()
    assert [p.name for p in state.iterdir()] == ["cache.json"]
    body = json.loads((state / "cache.json").read_text())
    assert body["format"] == "pipeline-context-stat-cache" and body["version"] == 1
    assert str((ctx / "a.txt").resolve()) in body["files"]
    assert ContextHasher().digest(ctx, ["."], []) == hasher.digest(ctx, ["."], [])


def test_no_cache_file_means_memory_only(ctx: Path) -> None:
    hasher = ContextHasher(racy_window_ns=0)
    hasher.digest(ctx, ["src"], [])
    hasher.digest(ctx, ["src"], [])
    assert (hasher.files_hashed, hasher.files_cached) == (3, 3)
    hasher.save()  # a no-op, not an error


def test_file_digest_is_sha256_of_the_bytes(tmp_path: Path) -> None:
    import hashlib

    big = os.urandom((1 << 20) * 2 + 17)  # crosses chunk boundaries
    ctx = make(tmp_path / "c", {"big": big})
    (entry,) = select(ctx, ["big"], [])
    assert ContextHasher().file_digest(entry) == "sha256:" + hashlib.sha256(big).hexdigest()


# ---------------------------------------------------------------------------
# globs and archives


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("*", "anything.txt", True),
        ("*", ".hidden", True),
        ("*.txt", "a.txt", True),
        ("*.txt", "a.txt.bak", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("[a-c]x", "bx", True),
        ("[a-c]x", "dx", False),
        ("[^a-c]x", "dx", True),
        ("[^a-c]x", "ax", False),
        ("[\\]]", "]", True),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("a.b", "aXb", False),
        ("**", "deep", True),
        ("(x)+", "(x)+", True),
    ],
)
def test_glob_is_go_filepath_match(pattern: str, name: str, matches: bool) -> None:
    assert bool(glob_regex(pattern).fullmatch(name)) is matches


@pytest.mark.parametrize("pattern", ["[", "[]", "[a", "a\\", "[z-a]", "[a-]"])
def test_bad_globs(pattern: str) -> None:
    with pytest.raises(ValueError):
        glob_regex(pattern)


def _tar(mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        info = tarfile.TarInfo("f")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "archive"),
    [
        (_tar("w"), True),
        (_tar("w:gz"), True),
        (_tar("w:bz2"), True),
        (_tar("w:xz"), True),
        (b"\x28\xb5\x2f\xfd" + b"\0" * 20, True),  # zstd magic
        (gzip.compress(b"just text"), False),
        (bz2.compress(b"just text"), False),
        (lzma.compress(b"just text"), False),
        (b"hello world\n", False),
        (b"", False),
    ],
)
def test_looks_like_archive(tmp_path: Path, data: bytes, archive: bool) -> None:
    path = tmp_path / "f"
    path.write_bytes(data)
    assert looks_like_archive(path) is archive


def test_archive_check_does_not_follow_symlinks(tmp_path: Path) -> None:
    (tmp_path / "real.tar").write_bytes(_tar("w"))
    os.symlink(tmp_path / "real.tar", tmp_path / "link.tar")
    assert looks_like_archive(tmp_path / "link.tar") is False
