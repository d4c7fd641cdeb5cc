"""A generated pip fleet for the factoring benchmark and tests: a pool of locally made,
deterministic wheels and apps whose pip sets draw from it.

Pool: ``pool`` packages ``pkg00``.. with data files of pseudo-random bytes (stored, not
deflated, so a wheel is about its size), sized between ``min_kib`` and ``max_kib``.
Every fourth package depends on the one before it (``pkg03`` needs ``pkg02``), so
closures are larger than the sets. ``pkg00`` and ``pkg01`` ship the same
``pipeline_shared.pth`` (identical bytes), so their layers must be one: the overlap
detection sees a path shipped alike (no conflict); with ``conflict``, ``pkg02`` and
``pkg05`` ship one path with different bytes (a conflict: one layer). Each of the
first three ships a console script.

Fleet: ``apps`` apps, each a set of ``min_set``..``max_set`` packages chosen with a
fixed seed, on one shared base image (Debian + python3-pip) that carries the pool as
a find-links directory (``PIP_NO_INDEX=1``, ``PIP_FIND_LINKS``), so no network is used
by pip.

    python -m benchmarks.wheelfleet --out DIR [--apps 40 --pool 20 --min-kib 1024 ...]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

DATE = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class WheelShape:
    apps: int = 40
    pool: int = 20
    min_kib: int = 1024
    max_kib: int = 20 * 1024
    min_set: int = 3
    max_set: int = 8
    seed: int = 15
    conflict: bool = False  # pkg02 and pkg05 ship one file with different bytes


def package_name(i: int) -> str:
    return f"pkg{i:02d}"


def depends(i: int) -> list[int]:
    return [i - 1] if i % 4 == 3 else []


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(i: int, size: int, out: Path, conflict: bool = False) -> Path:
    """One deterministic wheel (same bytes on every run)."""
    name = package_name(i)
    dist = f"{name}-1.0.dist-info"
    files: dict[str, bytes] = {}
    files[f"{name}/__init__.py"] = f'"""{name}"""\nVALUE = {i}\n'.encode()
    rng = random.Random(1000 + i)
    files[f"{name}/data.bin"] = rng.randbytes(size)
    if i < 2:
        files["pipeline_shared.pth"] = b"# shared by pkg00 and pkg01\n"
    if conflict and i in (2, 5):
        files["pipeline_conflict.txt"] = f"written by {name}\n".encode()
    requires = "".join(f"Requires-Dist: {package_name(d)}\n" for d in depends(i))
    files[f"{dist}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n{requires}"
    ).encode()
    files[f"{dist}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: pipeline-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    if i < 3:
        files[f"{dist}/entry_points.txt"] = (
            f"[console_scripts]\n{name}-tool = {name}:VALUE\n".encode()
        )
    record = [_record_line(n, d) for n, d in files.items()] + [f"{dist}/RECORD,,"]
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = out / f"{name}-1.0-py3-none-any.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for n, d in files.items():
            info = zipfile.ZipInfo(n, DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, d)
    path.write_bytes(buffer.getvalue())
    return path


def app_sets(shape: WheelShape) -> list[list[str]]:
    rng = random.Random(shape.seed)
    out = []
    for _ in range(shape.apps):
        k = rng.randint(shape.min_set, shape.max_set)
        out.append(sorted(package_name(i) for i in rng.sample(range(shape.pool), k)))
    return out


def sizes(shape: WheelShape) -> list[int]:
    rng = random.Random(shape.seed + 1)
    return [rng.randint(shape.min_kib, shape.max_kib) * 1024 for _ in range(shape.pool)]


APT = (
    "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y"
    " --no-install-recommends python3 python3-pip && rm -rf /var/lib/apt/lists/*"
)
FLEET_HCL = """\
image "python" {{
  from = "{base}"
  run {{
    command = "{apt}"
  }}
}}

image "pybase" {{
  from = image.python
  copy {{
    src  = "wheels"
    dest = "/opt/wheels"
  }}
  env {{
    PIP_NO_INDEX            = "1"
    PIP_FIND_LINKS          = "/opt/wheels"
    PYTHONDONTWRITEBYTECODE = "1"
  }}
}}
"""

APP_HCL = """
app "{name}" {{
  from   = image.pybase
  pip    = [{pip}]
  source = "apps/{name}"{extra}
}}
"""


def write_fleet(
    out: Path, shape: WheelShape, base: str = "debian:bookworm", extra: str = ""
) -> list[list[str]]:
    """Write ``out/specs`` (fleet.hcl with the base images, apps.hcl) and the wheels
    under ``out/specs/wheels``; returns the apps' pip sets."""
    specs = out / "specs"
    wheels = specs / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(sizes(shape)):
        make_wheel(i, size, wheels, shape.conflict)
    (specs / "fleet.hcl").write_text(FLEET_HCL.format(base=base, apt=APT))
    sets = app_sets(shape)
    text = []
    for n, pkgs in enumerate(sets):
        name = f"app{n:02d}"
        src = specs / "apps" / name
        src.mkdir(parents=True, exist_ok=True)
        (src / "main.py").write_text(f"import {', '.join(pkgs)}\nprint('{name}')\n")
        pip = ", ".join(f'"{p}"' for p in pkgs)
        text.append(APP_HCL.format(name=name, pip=pip, extra=extra))
    (specs / "apps.hcl").write_text("".join(text))
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--apps", type=int, default=40)
    parser.add_argument("--pool", type=int, default=20)
    parser.add_argument("--min-kib", type=int, default=1024)
    parser.add_argument("--max-kib", type=int, default=20 * 1024)
    a = parser.parse_args()
    write_fleet(a.out, WheelShape(a.apps, a.pool, a.min_kib, a.max_kib))


if __name__ == "__main__":
    main()
