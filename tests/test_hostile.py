"""Hostile inputs, one table per reader: spec files, Dockerfiles, tarballs, OCI layouts
and archives, docker-archives, registry responses. Each case runs the real CLI in a
child process (tests/bounded.py) and checks the one-line message it must print, its
exit status, and bounds on wall time and peak RSS (generous: these are correctness
tests, not benchmarks), and that a refused import leaves the store as it was."""

from __future__ import annotations

import bz2
import lzma
import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import hostile_inputs as h
from tests.bounded import GiB, MiB, Outcome, base_env, pipeline_argv, run_bounded


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path], list[str]]  # writes the input under the dir; the CLI args
    message: str  # regex the single stderr line must match (re.search)
    status: int = 1
    env: dict[str, str] = field(default_factory=dict)
    seconds: float = 30.0
    rss: int = 1 * GiB


def check(outcome: Outcome, case: Case) -> None:
    text = outcome.describe()
    assert not outcome.timed_out, text
    assert "Traceback" not in outcome.stderr + outcome.stdout, text
    assert outcome.returncode == case.status, text
    if case.status:
        lines = outcome.stderr.strip().splitlines()
        assert len(lines) == 1, text
        assert re.search(case.message, lines[0]), text
    assert outcome.seconds < case.seconds, text
    assert outcome.max_rss < case.rss, text


def run_case(tmp_path: Path, case: Case) -> Outcome:
    work = tmp_path / "input"
    work.mkdir()
    args = case.make(work)
    env = base_env(tmp_path / "store", **case.env)
    outcome = run_bounded(pipeline_argv(*args), cwd=tmp_path, env=env, timeout=case.seconds * 2)
    check(outcome, case)
    return outcome


def store_bytes(store: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(store):
        for name in files:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


# ---------------------------------------------------------------------------------------
# spec files: pipeline validate


def spec(text: str | bytes, name: str = "a.hcl") -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        data = text.encode() if isinstance(text, str) else text
        (d / name).write_bytes(data)
        return ["validate", "--specs", str(d)]

    return make


def numbers(n: int) -> str:
    return "[" + ", ".join(str(i) for i in range(n)) + "]"


LOC = r"^\S*a\.hcl:\d+:\d+: "
SPEC_CASES = [
    Case(
        "10MB-string",
        spec('a = "' + "x" * 10_000_000 + '"\n'),
        r"a\.hcl: file of 10,000,007 bytes; the limit is 1 MiB; PIPELINE_LIMIT_SPEC_BYTES",
        2,
    ),
    Case(
        "10MB-string-size-limit-raised",
        spec('a = "' + "x" * 10_000_000 + '"\n'),
        LOC + r"quoted string of 10,000,000 characters; the limit is 262,144 characters",
        2,
        {"PIPELINE_LIMIT_SPEC_BYTES": "64M"},
        rss=256 * MiB,
    ),
    Case(
        "300KiB-string",
        spec('locals {\n  a = "${1}' + "y" * 300_000 + '"\n}\n'),
        r"a\.hcl:2:7: quoted string of 300,004 characters; the limit is 262,144",
        2,
    ),
    Case(
        "300KiB-heredoc",
        spec("a = <<EOT\n" + ("z" * 99 + "\n") * 3000 + "EOT\n"),
        r"a\.hcl:1:5: heredoc of 300,000 characters",
        2,
    ),
    Case(
        "10000-deep-list",
        spec("a = " + "[" * 10_000 + "]" * 10_000 + "\n"),
        LOC + r"nested too deeply .*PIPELINE_LIMIT_SPEC_DEPTH",
        2,
    ),
    Case(
        "10000-deep-object",
        spec("a = " + "{a = " * 10_000 + "1" + "}" * 10_000 + "\n"),
        LOC + r"nested too deeply",
        2,
    ),
    Case(
        "10000-deep-blocks",
        spec("b {\n" * 10_000 + "}\n" * 10_000),
        LOC + r"nested too deeply",
        2,
    ),
    Case(
        "100000-term-sum",
        spec("a = " + "+".join(["1"] * 100_000) + "\n"),
        LOC + r"nested too deeply",
        2,
        seconds=90,
    ),
    Case(
        "10001-blocks",
        spec('variable "v" {}\n' + "locals {}\n" * 10_001),
        LOC + r"more than 10,000 blocks in one file; .*PIPELINE_LIMIT_SPEC_BLOCKS",
        2,
        seconds=60,
    ),
    Case(
        "matrix-of-a-million-apps",
        spec(
            'app "m" {\n  from = "scratch"\n  matrix = { a = '
            + numbers(100)
            + ", b = "
            + numbers(100)
            + ", c = "
            + numbers(100)
            + " }\n}\n"
        ),
        LOC + r'app "m": attribute "matrix": makes 1,000,000 apps',
        2,
    ),
    Case("2MiB-file", spec("# x\n" * (512 << 10)), r"file of 2,097,152 bytes", 2),
    Case(
        "not-utf8", spec(b'a = "ok"\nb = "\xff"\n'), r"a\.hcl:2:6: not UTF-8 text \(byte 0xff\)", 2
    ),
    Case("utf16", spec('a = "x"\n'.encode("utf-16")), r"a\.hcl:1:1: UTF-16 text", 2),
    Case("nul", spec('a = "x\0"\n'), r"a\.hcl:1:7: NUL character", 2),
    Case("bom-is-accepted", spec(b'\xef\xbb\xbfvariable "v" { default = 1 }\n'), "", 0),
    Case(
        "control-characters-escaped",
        spec('app "\x1b[2J\u202ename" {\n  from = "scratch"\n}\n'),
        r'app "\\x1b\[2J\\u202ename": invalid name',
        2,
    ),
]


@pytest.mark.parametrize("case", SPEC_CASES, ids=lambda c: c.id)
def test_spec_files(tmp_path: Path, case: Case) -> None:
    outcome = run_case(tmp_path, case)
    assert "\x1b" not in outcome.stderr and "\u202e" not in outcome.stderr


# ---------------------------------------------------------------------------------------
# Dockerfiles: pipeline validate on an app that names one


def dockerfile(data: bytes) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        (d / "Dockerfile").write_bytes(data)
        (d / "a.hcl").write_text('app "d" {\n  dockerfile = "Dockerfile"\n}\n')
        return ["validate", "--specs", str(d)]

    return make


DOCKERFILE_CASES = [
    Case(
        "2MiB-dockerfile",
        dockerfile(b"FROM scratch\n" + b"# comment\n" * 210_000),
        r"Dockerfile: app \"d\": larger than 1,048,576 bytes; .*PIPELINE_LIMIT_SPEC_BYTES",
        2,
    ),
    Case(
        "not-utf8",
        dockerfile(b"FROM scratch\nLABEL a=\xff\n"),
        r"Dockerfile: app \"d\": not UTF-8 text",
        2,
    ),
    Case(
        "900KB-of-continuations",
        dockerfile(b"FROM scratch\nRUN " + b"x \\\n" * 225_000 + b"y\n"),
        "",
        0,
        seconds=60,
    ),
    Case(
        "control-characters-escaped",
        dockerfile(b"FROM scratch\nCOPY \x1b[31mmissing /x\n"),
        r'Dockerfile:2:1: app "d": COPY source "\\x1b\[31mmissing"',
        2,
    ),
]


@pytest.mark.parametrize("case", DOCKERFILE_CASES, ids=lambda c: c.id)
def test_dockerfiles(tmp_path: Path, case: Case) -> None:
    run_case(tmp_path, case)


# ---------------------------------------------------------------------------------------
# tarballs: pipeline import FILE --tag t:1


def tarball(write: Callable[[Path], None], name: str = "in.tar") -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        path = d / name
        write(path)
        return ["import", str(path), "--tag", "t:1"]

    return make


def raw(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


A = h.member("a", b"first")
B = h.member("b", b"x" * 2000)


def bomb(compress: Callable[[bytes], bytes], total: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        once = compress(b"\0" * MiB)
        with open(path, "wb") as f:
            f.write(compress(h.header("zeros", total, fmt=tarfile.GNU_FORMAT)))
            for _ in range(total // MiB):
                f.write(once)
            f.write(compress(h.END))

    return write


def pax_sparse(path: Path) -> None:
    records = h.pax_record("GNU.sparse.realsize", 16)[0] + b"1125899906842624\n"
    path.write_bytes(
        h.header("././@PaxHeader", len(records), tarfile.XHDTYPE)
        + records
        + h.pad(len(records))
        + h.header("big", 0)
        + h.END
    )


TAR_CASES = [
    Case(
        "truncated-after-first-entry",
        tarball(raw(A)),
        r'in\.tar: truncated: the archive ends after entry 1, after "a" without its '
        r"end-of-archive marker",
    ),
    Case(
        "truncated-inside-second-entry",
        tarball(raw(A + B[:1200])),
        r'in\.tar: truncated: entry 2 "b" ends after 688 of its 2000 bytes',
    ),
    Case(
        "negative-size-after-first-entry",
        tarball(raw(A + h.negative_size_header("b") + h.END)),
        r'in\.tar: entry 2 \(header at offset 1024, after "a"\): corrupt: negative size',
    ),
    Case(
        "bad-checksum-in-second-header",
        tarball(raw(A + B[:100] + b"!" + B[101:] + h.END)),
        r'in\.tar: entry 2 \(header at offset 1024, after "a"\): corrupt: bad header checksum',
    ),
    Case(
        "data-after-a-zero-block",
        tarball(raw(A + bytes(512) + B + h.END)),
        r"corrupt: a zero block followed by more data",
    ),
    Case("empty-file", tarball(raw(b"")), r"in\.tar: not a valid tar archive: the stream is empty"),
    Case("garbage", tarball(raw(b"hello\n" * 200)), r"in\.tar: not a valid tar archive"),
    Case(
        "1GiB-pax-path",
        tarball(h.write_pax_path_bomb, "in.tar.gz"),
        r"in\.tar\.gz: entry 1 \(header at offset 0\): PAX extended header of 1,073,741,841 "
        r"bytes; the limit is 1 MiB; PIPELINE_LIMIT_HEADER_BYTES",
        seconds=20,
    ),
    Case(
        "2MiB-gnu-long-name",
        tarball(raw(h.member("x" * (2 * MiB), b"", fmt=tarfile.GNU_FORMAT) + h.END)),
        r"entry 1 \(header at offset 0\): GNU long name of 2,097,153 bytes",
    ),
    Case(
        "5000-deep-tree",
        tarball(h.write_deep_tree, "in.tar.gz"),
        r'in\.tar\.gz: entry 1025 "d/d/d.*": path 1,025 levels deep; the limit is 1,024 '
        r"levels; PIPELINE_LIMIT_PATH_DEPTH",
        seconds=20,
    ),
    Case(
        "5000-byte-path",
        tarball(raw(h.member("p" * 5000, b"", fmt=tarfile.PAX_FORMAT) + h.END)),
        r'entry 1 "p+\.\.\.\(5000 characters\)\.\.\.p+": path of 5,000 bytes; the limit is '
        r"4095 bytes",
    ),
    Case(
        "10GiB-zero-bomb-gzip",
        tarball(h.write_zero_bomb, "in.tar.gz"),
        r"in\.tar\.gz: refused: .* compressed bytes expand to more than .* \(over 250 times; "
        r"a decompression bomb\?\); .*PIPELINE_LIMIT_RATIO",
        seconds=20,
    ),
    Case(
        "10GiB-zero-bomb-xz",
        tarball(bomb(lzma.compress, 10 * GiB), "in.tar.xz"),
        r"a decompression bomb",
        seconds=20,
    ),
    Case(
        "10GiB-zero-bomb-bzip2",
        tarball(bomb(bz2.compress, 10 * GiB), "in.tar.bz2"),
        r"a decompression bomb",
        seconds=20,
    ),
    Case(
        "1PiB-gnu-sparse",
        tarball(raw(h.sparse_header("big", 1 << 50) + h.END)),
        r'entry 1 "big": sparse files are not supported in layers',
    ),
    Case(
        "1PiB-pax-sparse",
        tarball(pax_sparse),
        r'entry 1 "big": sparse files are not supported in layers',
    ),
    Case(
        "declared-1PiB-file",
        tarball(raw(h.header("big", 1 << 50, fmt=tarfile.GNU_FORMAT))),
        r'in\.tar: truncated: entry 1 "big" ends after 0 of its 1125899906842624 bytes',
    ),
    Case(
        "unpacked-bytes-limit",
        tarball(raw(h.member("a", b"\1" * MiB) + h.member("b", b"\2" * MiB) + h.END)),
        r'in\.tar: entry 2 "b": the archive unpacks to more than 1 MiB; '
        r".*PIPELINE_LIMIT_UNPACKED_BYTES",
        env={"PIPELINE_LIMIT_UNPACKED_BYTES": "1M"},
    ),
    Case(
        "disk-would-fill",
        tarball(raw(h.member("two-mib", b"\1" * (2 * MiB)) + h.END)),
        r'entry 1 "two-mib": needs 2,097,152 bytes but the store\'s disk has [\d,]+ free',
        env={"PIPELINE_LIMIT_FREE_RESERVE_BYTES": "1000000T"},
    ),
    Case(
        "too-many-entries",
        tarball(raw(b"".join(h.member(f"f{i}") for i in range(101)) + h.END)),
        r"in\.tar: more than 100 entries; the limit is 100 entries",
        env={"PIPELINE_LIMIT_ARCHIVE_ENTRIES": "100"},
    ),
    Case(
        "symlink-named-dot",
        tarball(raw(h.member(".", kind=tarfile.SYMTYPE, linkname="/etc") + h.END)),
        r"refused path '\.': an entry of type '2' would replace the layer root",
    ),
    Case(
        "symlink-named-dot-slash",
        tarball(raw(h.member("./", kind=tarfile.SYMTYPE, linkname="/") + h.END)),
        r"refused path '\./': an entry of type '2' would replace the layer root",
    ),
    Case(
        "file-named-dot",
        tarball(raw(h.member("./", b"data") + h.END)),
        r"would replace the layer root",
    ),
    Case(
        "hardlink-named-dot",
        tarball(raw(A + h.member(".", kind=tarfile.LNKTYPE, linkname="a") + h.END)),
        r"would replace the layer root",
    ),
    Case(
        "whiteout-of-the-root",
        tarball(raw(h.member(".wh..") + h.END)),
        r"whiteout without a valid name",
    ),
    Case(
        "bad-limit-value",
        tarball(raw(A + h.END)),
        r"PIPELINE_LIMIT_RATIO='lots': expected a positive whole number",
        2,
        env={"PIPELINE_LIMIT_RATIO": "lots"},
    ),
]


@pytest.mark.parametrize("case", TAR_CASES, ids=lambda c: c.id)
def test_tarballs(tmp_path: Path, case: Case) -> None:
    run_case(tmp_path, case)
    store = tmp_path / "store"
    if store.exists():
        assert store_bytes(store) < 64 * MiB
        assert [p.name for p in (store / "tmp").iterdir()] == []
        assert [p.name for p in (store / "layers").iterdir()] == []


def test_the_three_imports_of_the_issue_stay_bounded(tmp_path: Path) -> None:
    """Done-when: a 1 GiB PAX path, a 10 GiB zero bomb and a 5,000-deep tree each end
    within 20 s and 1 GiB RSS with a located refusal, leaving under 64 MiB behind."""
    made = {
        "pax.tar.gz": h.write_pax_path_bomb,
        "zeros.tar.gz": h.write_zero_bomb,
        "deep.tar.gz": h.write_deep_tree,
    }
    for name, write in made.items():
        path = tmp_path / name
        write(path)
        store = tmp_path / f"store-{name}"
        outcome = run_bounded(
            pipeline_argv("import", str(path), "--tag", "t:1"), env=base_env(store), timeout=40
        )
        text = outcome.describe()
        assert outcome.returncode == 1 and outcome.seconds < 20, text
        assert outcome.max_rss < GiB, text
        assert outcome.stderr.startswith(f"{path}: ") and outcome.stderr.count("\n") == 1, text
        assert store_bytes(store) < 64 * MiB, text


# ---------------------------------------------------------------------------------------
# OCI layouts and archives, docker-archives


MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "0" * 64}


def layout(document: dict[str, object] | bytes, media_type: str) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        h.oci_layout(d / "layout", document, media_type)
        return ["import", str(d / "layout"), "--tag", "t:1"]

    return make


def oci_archive(cut: int) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        layer = h.tar_of([h.member("f", b"hello")])
        h.oci_layout(d / "layout", {"schemaVersion": 2, "config": EMPTY, "layers": []}, MT_MANIFEST)
        (d / "layout" / "blobs" / "sha256" / h.digest_of(layer)[7:]).write_bytes(layer)
        with tarfile.open(d / "full.tar", "w") as tf:
            tf.add(d / "layout", arcname=".")
        data = (d / "full.tar").read_bytes()
        (d / "in.tar").write_bytes(data[:cut] if cut > 0 else data[: len(data) + cut])
        return ["import", str(d / "in.tar"), "--tag", "t:1"]

    return make


def docker(layer: bytes, cut: int | None = None) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        h.docker_archive(d / "in.tar", layer, cut)
        return ["import", str(d / "in.tar"), "--tag", "t:1"]

    return make


def docker_negative(d: Path) -> list[str]:
    h.docker_archive(d / "ok.tar", h.tar_of([A]))
    data = (d / "ok.tar").read_bytes()
    (d / "in.tar").write_bytes(data[:1024] + h.negative_size_header("evil") + h.END)
    return ["import", str(d / "in.tar"), "--tag", "t:1"]


BOTH = {"schemaVersion": 2, "config": EMPTY, "layers": [], "manifests": []}
ARCHIVE_CASES = [
    Case(
        "manifest-and-index-at-once",
        layout(BOTH, MT_MANIFEST),
        r"layout/blobs/sha256/[0-9a-f]{64}: sha256:[0-9a-f]{64}: refused: ambiguous document: "
        r"it has both 'manifests' and 'layers'/'config'",
    ),
    Case(
        "index-declared-image-shaped",
        layout({"schemaVersion": 2, "config": EMPTY, "layers": []}, MT_INDEX),
        r"sha256:[0-9a-f]{64}: refused: declared as application/vnd\.oci\.image\.index\.v1\+json "
        r"but shaped like an image manifest",
    ),
    Case(
        "100000-deep-json",
        layout(b"[" * 100_000 + b"]" * 100_000, MT_MANIFEST),
        r"not an image JSON: nested too deeply",
    ),
    Case(
        "20MiB-manifest",
        layout(b" " * (20 * MiB) + b"{}", MT_MANIFEST),
        r"larger than 16777216 bytes; not an image JSON",
    ),
    Case("oci-archive-truncated", oci_archive(1600), r"in\.tar: truncated"),
    Case(
        "docker-archive-cut-inside-its-layer",
        docker(h.tar_of([h.member("f", b"x" * 5000)]), cut=3 * 512 + 2 * 512 + 1000),
        r"in\.tar: truncated",
    ),
    Case(
        "docker-archive-layer-truncated",
        docker(A + B[:1500]),
        r'in\.tar:l/layer\.tar: truncated: entry 2 "b" ends after 988 of its 2000 bytes',
    ),
    Case(
        "docker-archive-layer-without-end-marker",
        docker(A),
        r'in\.tar:l/layer\.tar: truncated: the archive ends after entry 1, after "a"',
    ),
    Case(
        "docker-archive-negative-size",
        docker_negative,
        r'in\.tar: entry 2 \(header at offset 1024, after "manifest\.json"\): corrupt: '
        r"negative size",
    ),
]


@pytest.mark.parametrize("case", ARCHIVE_CASES, ids=lambda c: c.id)
def test_image_archives(tmp_path: Path, case: Case) -> None:
    run_case(tmp_path, case)
