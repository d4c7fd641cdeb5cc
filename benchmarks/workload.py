"""A deterministic fleet for benchmarks: the same services as pipeline HCL specs and as
one plain Dockerfile each.

Shape: ``apps`` services on ``dep_sets`` shared dependency sets of ``dep_mb`` MiB each,
above one shared "system packages" step of ``system_mb`` MiB on ``busybox:latest``, and
``files`` source files per service. Every RUN step is a busybox shell command that
writes pseudo-random bytes which are the same on every run and do not compress (gzip
and xz both leave them at their size), so no tool gains from a compressing filesystem
or a lucky dedupe. How: ``awk`` with a fixed ``srand`` seed writes 64 KiB as hex, four
``tr`` nibble permutations double it to 1 MiB, and each output file is that block under
one more nibble permutation, turned into bytes by ``xxd -r -p`` (about 40 MiB/s here).

Layout written under ``--out DIR``::

    DIR/fleet.json                 the shape, the apps and what the tools need to know
    DIR/specs/fleet.hcl            image "base" (system step) and image "deps_K" (K < D)
    DIR/specs/services-NN.hcl      the apps, 100 per file
    DIR/specs/apps/<app>/          each app's source: main.sh + (files - 1) text files
    DIR/docker/<app>.Dockerfile    FROM, RUN system, RUN deps, COPY, WORKDIR, ENV, ENTRYPOINT

The Dockerfile of an app is built with the app's source directory as its context. The
pipeline app lowers to the same layers in the same order (base, system, deps, source)
with the metadata in the image config, so both sides do the same work.

    python -m benchmarks.workload --out DIR --apps 40 --dep-sets 3 --dep-mb 20 \\
        --system-mb 4 --files 5
    python -m benchmarks.workload --out DIR --plan-fleet      # 1,000 apps, specs only
    python -m benchmarks.workload --out DIR --change svc-003  # edit one source file
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

MIB = 1 << 20
HEX = "0123456789abcdef"
BLOCK = MIB  # every data file is a (prefix of a) permuted 1 MiB block
SEED_BYTES = 64 << 10  # awk writes this much; doublings make the block
APPS_PER_SPEC_FILE = 100
WORKDIR = "/srv"
ENTRYPOINT = ("/bin/sh", "/srv/main.sh")


@dataclass(frozen=True)
class Shape:
    """The size of a generated fleet. Sizes are MiB and may be fractional."""

    apps: int = 40
    dep_sets: int = 3
    dep_mb: float = 20.0
    system_mb: float = 4.0
    files: int = 5
    file_kb: int = 4
    system_part_kb: int = 256
    dep_part_kb: int = 1024
    seed: int = 1
    base: str = "busybox:latest"

    def __post_init__(self) -> None:
        if self.apps < 1 or self.dep_sets < 1 or self.files < 1:
            raise ValueError("apps, dep_sets and files must be at least 1")
        if self.dep_mb < 0 or self.system_mb < 0 or self.file_kb < 0:
            raise ValueError("sizes must not be negative")
        for kb in (self.system_part_kb, self.dep_part_kb):
            if not 1 <= kb <= BLOCK >> 10:
                raise ValueError(f"part size {kb} KiB: must be 1..{BLOCK >> 10}")

    @property
    def width(self) -> int:
        return max(3, len(str(self.apps - 1)))

    def app_names(self) -> list[str]:
        return [f"svc-{i:0{self.width}d}" for i in range(self.apps)]

    def dep_set_of(self, index: int) -> int:
        return index % self.dep_sets

    @property
    def unique_data_bytes(self) -> int:
        """Bytes of file content the RUN steps write (each written once by a sharing tool)."""
        return _mib(self.system_mb) + self.dep_sets * _mib(self.dep_mb)

    @property
    def source_bytes(self) -> int:
        return self.apps * sum(len(c) for c in _source_files("x" * self.width, self).values())


def _mib(size: float) -> int:
    return round(size * MIB)


# -- the RUN steps -----------------------------------------------------------------------


def _perm(rng: random.Random) -> str:
    letters = list(HEX)
    rng.shuffle(letters)
    return "".join(letters)


def fill_command(target: str, size: int, part: int, seed: int) -> str:
    """A busybox ``sh -c`` command that creates ``target`` with ``size`` bytes of
    deterministic, incompressible content in files of ``part`` bytes (the last may be
    shorter). Temporary files live in ``target`` and are removed, so the layer holds
    only the data files."""
    if not 0 < part <= BLOCK:
        raise ValueError(f"part size {part}: must be 1..{BLOCK}")
    rng = random.Random(f"pipeline-bench:{seed}")
    steps = [f"set -e; mkdir -p {target}"]
    if size == 0:
        return steps[0]
    awk_seed = rng.randrange(1, 2**31 - 1)
    words = SEED_BYTES // 2
    doublings = (BLOCK // SEED_BYTES).bit_length() - 1
    steps += [
        f"cd {target}",
        f"awk 'BEGIN{{srand({awk_seed});for(i=0;i<{words};i++)"
        f'printf "%04x",int(rand()*65536)}}\' > .a',
        f"for p in {' '.join(_perm(rng) for _ in range(doublings))}; do"
        f" tr {HEX} $p < .a > .b; cat .b >> .a; done",
    ]
    full, rest = divmod(size, part)
    if full:
        perms = " ".join(_perm(rng) for _ in range(full))
        steps.append(
            f"i=0; for p in {perms}; do head -c {2 * part} .a | tr {HEX} $p | xxd -r -p"
            " > part-$i.bin; i=$((i+1)); done"
        )
    if rest:
        steps.append(f"head -c {2 * rest} .a | tr {HEX} {_perm(rng)} | xxd -r -p > part-{full}.bin")
    steps.append("rm -f .a .b")
    return "; ".join(steps)


def system_command(shape: Shape) -> str:
    return fill_command(
        "/opt/system", _mib(shape.system_mb), shape.system_part_kb << 10, shape.seed * 1000
    )


def dep_command(shape: Shape, k: int) -> str:
    return fill_command(
        f"/opt/deps/set-{k}", _mib(shape.dep_mb), shape.dep_part_kb << 10, shape.seed * 1000 + 1 + k
    )


def run_steps(shape: Shape) -> list[tuple[str, str]]:
    """The fleet's unique RUN steps in build order: (image name, shell command)."""
    return [("base", system_command(shape))] + [
        (f"deps_{k}", dep_command(shape, k)) for k in range(shape.dep_sets)
    ]


# -- sources -----------------------------------------------------------------------------


def _text(label: str, size: int) -> str:
    lines = []
    total = 0
    n = 0
    while total < size:
        line = hashlib.sha256(f"{label}:{n}".encode()).hexdigest() + "\n"
        lines.append(line)
        total += len(line)
        n += 1
    return "".join(lines)[:size]


def _source_files(app: str, shape: Shape) -> dict[str, str]:
    files = {"main.sh": f'#!/bin/sh\necho "{app} up (service of the benchmark fleet)"\n'}
    for j in range(1, shape.files):
        files[f"mod_{j}.txt"] = _text(f"{shape.seed}:{app}:{j}", shape.file_kb << 10)
    return files


# -- writers -----------------------------------------------------------------------------


def hcl_string(value: str) -> str:
    """A quoted HCL string literal whose value is exactly ``value`` (no interpolation)."""
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")


def fleet_hcl(shape: Shape) -> str:
    out = [
        "# Generated by benchmarks.workload; do not edit.",
        f"# {json.dumps(asdict(shape), sort_keys=True)}",
        "",
        'image "base" {',
        f"  from = {hcl_string(shape.base)}",
        f"  run {{ command = {hcl_string(system_command(shape))} }}",
        "}",
    ]
    for k in range(shape.dep_sets):
        out += [
            "",
            f'image "deps_{k}" {{',
            "  from = image.base",
            f"  run {{ command = {hcl_string(dep_command(shape, k))} }}",
            "}",
        ]
    return "\n".join(out) + "\n"


def app_hcl(shape: Shape, index: int, name: str) -> str:
    entry = ", ".join(hcl_string(a) for a in ENTRYPOINT)
    return (
        f"app {hcl_string(name)} {{\n"
        f"  from       = image.deps_{shape.dep_set_of(index)}\n"
        f"  source     = {hcl_string('apps/' + name)}\n"
        f"  workdir    = {hcl_string(WORKDIR)}\n"
        f"  env        = {{ SERVICE = {hcl_string(name)} }}\n"
        f"  entrypoint = [{entry}]\n"
        "}\n"
    )


def dockerfile(shape: Shape, index: int, name: str) -> str:
    return (
        f"# Generated by benchmarks.workload: {name}, dependency set"
        f" {shape.dep_set_of(index)}; build with its source dir as the context.\n"
        f"FROM {shape.base}\n"
        f"RUN {system_command(shape)}\n"
        f"RUN {dep_command(shape, shape.dep_set_of(index))}\n"
        f"COPY . {WORKDIR}/\n"
        f"WORKDIR {WORKDIR}\n"
        f"ENV SERVICE={name}\n"
        f"ENTRYPOINT {json.dumps(list(ENTRYPOINT))}\n"
    )


@dataclass(frozen=True)
class Fleet:
    """A generated fleet on disk."""

    root: Path
    shape: Shape
    apps: tuple[str, ...]
    dockerfiles: bool = True

    @property
    def specs(self) -> Path:
        return self.root / "specs"

    def context(self, app: str) -> Path:
        return self.specs / "apps" / app

    def dockerfile(self, app: str) -> Path:
        return self.root / "docker" / f"{app}.Dockerfile"

    @classmethod
    def load(cls, root: Path) -> Fleet:
        data = json.loads((root / "fleet.json").read_text())
        return cls(root, Shape(**data["shape"]), tuple(data["apps"]), data["dockerfiles"])


def generate(root: Path, shape: Shape, dockerfiles: bool = True) -> Fleet:
    """Write the fleet under ``root`` (created; existing generated files are replaced).
    Deterministic: the same shape gives the same bytes."""
    names = shape.app_names()
    specs = root / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    for old in specs.glob("services-*.hcl"):
        old.unlink()
    (specs / "fleet.hcl").write_text(fleet_hcl(shape))
    for start in range(0, len(names), APPS_PER_SPEC_FILE):
        chunk = names[start : start + APPS_PER_SPEC_FILE]
        text = "\n".join(app_hcl(shape, start + i, n) for i, n in enumerate(chunk))
        (specs / f"services-{start // APPS_PER_SPEC_FILE:02d}.hcl").write_text(text)
    for i, name in enumerate(names):
        src = specs / "apps" / name
        src.mkdir(parents=True, exist_ok=True)
        for fname, content in _source_files(name, shape).items():
            (src / fname).write_text(content)
        if dockerfiles:
            docker = root / "docker"
            docker.mkdir(exist_ok=True)
            (docker / f"{name}.Dockerfile").write_text(dockerfile(shape, i, name))
    meta = {"shape": asdict(shape), "apps": names, "dockerfiles": dockerfiles}
    (root / "fleet.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Fleet(root, shape, tuple(names), dockerfiles)


def change_source(fleet: Fleet, app: str | None = None, revision: int = 1) -> Path:
    """Edit one source file of one app (default: the first app's ``mod_1.txt``, else
    ``main.sh``) so that exactly that app's source layer changes. Each ``revision``
    gives different content; revision 0 restores the generated file."""
    app = app or fleet.apps[0]
    if app not in fleet.apps:
        raise ValueError(f"{app}: not an app of this fleet")
    files = _source_files(app, fleet.shape)
    name = "mod_1.txt" if "mod_1.txt" in files else "main.sh"
    path = fleet.context(app) / name
    content = files[name]
    if revision:
        content += f"# revision {revision}\n"
    path.write_text(content)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.workload", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", type=Path, required=True, help="directory to write the fleet to")
    p.add_argument("--apps", type=int, default=40)
    p.add_argument("--dep-sets", type=int, default=3)
    p.add_argument("--dep-mb", type=float, default=20.0, help="MiB per dependency set")
    p.add_argument("--system-mb", type=float, default=4.0, help="MiB of the shared system step")
    p.add_argument("--files", type=int, default=5, help="source files per app")
    p.add_argument("--file-kb", type=int, default=4, help="KiB per source file")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--base", default="busybox:latest")
    p.add_argument("--no-dockerfiles", action="store_true")
    p.add_argument(
        "--plan-fleet",
        action="store_true",
        help="1,000 apps on 10 dependency sets, specs only (for `pipeline plan`)",
    )
    p.add_argument("--change", metavar="APP", help="edit one source file of APP in --out")
    p.add_argument("--revision", type=int, default=1, help="with --change: which edit")
    args = p.parse_args(argv)
    if args.change:
        path = change_source(Fleet.load(args.out), args.change, args.revision)
        print(f"changed {path}")
        return 0
    if args.plan_fleet:
        args.apps, args.dep_sets, args.no_dockerfiles = 1000, 10, True
    shape = Shape(
        apps=args.apps,
        dep_sets=args.dep_sets,
        dep_mb=args.dep_mb,
        system_mb=args.system_mb,
        files=args.files,
        file_kb=args.file_kb,
        seed=args.seed,
        base=args.base,
    )
    fleet = generate(args.out, shape, dockerfiles=not args.no_dockerfiles)
    print(
        f"{fleet.root}: {shape.apps} apps, {shape.dep_sets} dependency sets x"
        f" {shape.dep_mb:g} MiB, system {shape.system_mb:g} MiB, {shape.files} files per app;"
        f" unique RUN bytes {shape.unique_data_bytes / MIB:.1f} MiB,"
        f" source {shape.source_bytes / 1024:.0f} KiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
