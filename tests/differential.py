"""The differential Dockerfile suite's case table and the two builds it compares.

A case is a directory ``tests/cases/differential/<NN-name>/`` with a ``Dockerfile``,
an optional ``context/`` directory (the build context, with its ``.dockerignore``;
an empty context otherwise) and a ``case.toml``:

* ``description`` (required): one line;
* ``oracle``: ``"buildkit"`` (default) or ``"written"``;
* ``args`` (build args), ``target`` (a stage name), ``secrets`` (id = a file of the
  case directory; BuildKit gets ``--secret id=ID,src=FILE``, pipeline the app's
  ``secrets`` map);
* ``[[tar]]``: archives made into the context before the build (``path``,
  ``compression`` = ``"none" | "gz" | "bz2" | "xz"``, ``entries`` = list of tables
  with ``name``, ``type`` = ``file | dir | symlink | hardlink``, ``mode``, ``uid``,
  ``gid``, ``content``, ``target``, ``xattrs``); ``[xattrs]``: ``"context/path" =
  {name = value}`` set on the context copy;
* ``fails = true`` (buildkit oracle): both tools must refuse the Dockerfile, and
  pipeline's message must match the regular expression ``error`` when given;
* written oracle: ``[expect]`` (see :mod:`tests.written`) and optionally
  ``equivalent = "Dockerfile.2010"``, a Dockerfile the 20.10 daemon accepts that must
  give the same image: BuildKit builds it, the written facts are checked against that
  build too (so they are known to be right), and pipeline's image is compared with it
  in full;
* ``pending = "..."``: pipeline does not yet give this image; the one-line reason.

Every case's app is ``cNN`` (NN from the directory name), tagged ``case/cNN:latest``
in both tools. Crafted base images (a base config over the busybox layer) are listed
in ``tests/cases/differential/bases.toml`` and loaded into both tools byte for byte.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import oracle

REPO = Path(__file__).resolve().parent.parent
CASES_DIR = REPO / "tests" / "cases" / "differential"
BASES_FILE = CASES_DIR / "bases.toml"
BASE = "busybox:latest"
_KEYS = {
    "description",
    "oracle",
    "args",
    "target",
    "secrets",
    "tar",
    "xattrs",
    "fails",
    "error",
    "expect",
    "equivalent",
    "pending",
}


@dataclass(frozen=True)
class Case:
    name: str
    dir: Path
    description: str
    oracle: str = "buildkit"
    args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)
    tars: tuple[Mapping[str, Any], ...] = ()
    xattrs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    fails: bool = False
    error: str | None = None
    expect: Mapping[str, Any] | None = None
    equivalent: str | None = None
    pending: str | None = None

    @property
    def app(self) -> str:
        return "c" + self.name.split("-", 1)[0]

    @property
    def tag(self) -> str:
        return f"case/{self.app}:latest"

    @property
    def dockerfile(self) -> Path:
        return self.dir / "Dockerfile"

    @property
    def buildkit_dockerfile(self) -> Path | None:
        """What BuildKit builds: the Dockerfile, its 20.10 equivalent, or nothing."""
        if self.oracle == "buildkit":
            return self.dockerfile
        return self.dir / self.equivalent if self.equivalent else None


def verdict(case: Case | BaseSpec, lines: list[str]) -> tuple[str, str]:
    """What the test does with a case's differences: ``("pass", "")``, ``("xfail",
    reason)`` for a pending case that still differs, or ``("fail", message)`` for a
    case that differs and is not pending, or is pending and no longer differs (so the
    implementer removes the mark)."""
    if case.pending:
        if lines:
            return "xfail", f"pending: {case.pending} | first difference: {lines[0]}"
        return "fail", (
            f"{case.name} now gives the expected image: remove its pending mark"
            f" ({case.pending!r}) from {_where(case)}"
        )
    if lines:
        what = case.description if isinstance(case, Case) else "imported unchanged"
        return "fail", "\n".join([f"{case.name}: {what}", *lines])
    return "pass", ""


def _where(item: Case | BaseSpec) -> Path:
    return item.dir / "case.toml" if isinstance(item, Case) else BASES_FILE


def load_case(path: Path) -> Case:
    """One case directory; a located one-line error for a malformed case file."""
    where = path / "case.toml"
    data = tomllib.loads(where.read_text())
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    if not re.fullmatch(r"\d{2,3}-[a-z0-9-]+", path.name):
        raise ValueError(f"{path}: case directories are named NN-name")
    kind = data.get("oracle", "buildkit")
    if kind not in ("buildkit", "written"):
        raise ValueError(f'{where}: oracle must be "buildkit" or "written", found {kind!r}')
    if kind == "written" and "expect" not in data:
        raise ValueError(f"{where}: a written case needs [expect]")
    if kind == "buildkit" and ("expect" in data or "equivalent" in data):
        raise ValueError(f"{where}: [expect] and equivalent are for written cases")
    if "error" in data and not data.get("fails"):
        raise ValueError(f"{where}: error goes with fails = true")
    if not data.get("description"):
        raise ValueError(f"{where}: description is required")
    for name in ("Dockerfile", data.get("equivalent")):
        if name and not (path / name).is_file():
            raise ValueError(f"{where}: {name} is missing")
    return Case(
        name=path.name,
        dir=path,
        description=data["description"],
        oracle=kind,
        args={str(k): str(v) for k, v in data.get("args", {}).items()},
        target=data.get("target"),
        secrets=dict(data.get("secrets", {})),
        tars=tuple(data.get("tar", ())),
        xattrs=dict(data.get("xattrs", {})),
        fails=bool(data.get("fails", False)),
        error=data.get("error"),
        expect=data.get("expect"),
        equivalent=data.get("equivalent"),
        pending=data.get("pending"),
    )


def load_cases() -> list[Case]:
    cases = [load_case(p) for p in sorted(CASES_DIR.iterdir()) if p.is_dir()]
    apps = [c.app for c in cases]
    if len(set(apps)) != len(apps):
        raise ValueError(f"{CASES_DIR}: two cases share a number")
    return cases


@dataclass(frozen=True)
class BaseSpec:
    """A crafted base: what its config changes over busybox's (``config`` merges into
    the config's ``config`` object), and why pipeline does not yet import it unchanged."""

    name: str
    changes: Mapping[str, Any]
    pending: str | None = None


def load_bases() -> dict[str, BaseSpec]:
    data = tomllib.loads(BASES_FILE.read_text())
    out = {}
    for name, spec in data["bases"].items():
        changes = {k: v for k, v in spec.items() if k != "pending"}
        out[name] = BaseSpec(name, changes, spec.get("pending"))
    return out


# -- contexts --------------------------------------------------------------------------


def make_context(case: Case, dest: Path) -> Path:
    """The case's build context, copied (symlinks kept) with its archives and xattrs."""
    src = case.dir / "context"
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True)
    else:
        dest.mkdir(parents=True)
    for spec in case.tars:
        (dest / spec["path"]).parent.mkdir(parents=True, exist_ok=True)
        (dest / spec["path"]).write_bytes(make_tar(spec))
    for rel, attrs in case.xattrs.items():
        for name, value in attrs.items():
            os.setxattr(dest / rel, name, value.encode(), follow_symlinks=False)
    return dest


def make_tar(spec: Mapping[str, Any]) -> bytes:
    """An archive from a ``[[tar]]`` table (PAX, so xattrs and long names fit)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in spec["entries"]:
            kind = e.get("type", "file")
            info = tarfile.TarInfo(e["name"])
            info.mode = int(e.get("mode", "0755" if kind == "dir" else "0644"), 8)
            info.uid, info.gid = int(e.get("uid", 0)), int(e.get("gid", 0))
            info.mtime = 1_000_000_000
            if e.get("xattrs"):
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e["xattrs"].items()}
            data = None
            if kind == "file":
                data = e.get("content", "").encode()
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = e["target"]
            else:
                raise ValueError(f"tar {spec['path']}: unknown entry type {kind!r}")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    compress: dict[str, Callable[[bytes], bytes]] = {
        "none": lambda b: b,
        "gz": lambda b: gzip.compress(b, mtime=0),
        "bz2": bz2.compress,
        "xz": lzma.compress,
    }
    return compress[spec.get("compression", "none")](raw)


# -- crafted bases ---------------------------------------------------------------------


def craft_base(busybox_archive: Path, name: str, changes: Mapping[str, Any], out: Path) -> str:
    """A docker-archive of busybox's layer under a changed config; its config digest.

    ``changes["config"]`` is merged into the config's ``config`` object; other keys
    replace top-level fields."""
    with tarfile.open(busybox_archive) as tar:
        (item,) = json.load(oracle._member(tar, "manifest.json"))
        config = json.load(oracle._member(tar, item["Config"]))
        layers = [(p, oracle._member(tar, p).read()) for p in item["Layers"]]
    for key, value in changes.items():
        if key == "config":
            config["config"] = {**(config.get("config") or {}), **value}
        else:
            config[key] = value
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(blob).hexdigest()
    manifest = [{"Config": f"{digest}.json", "RepoTags": [name], "Layers": [p for p, _ in layers]}]
    with tarfile.open(out, "w") as tar:
        for path, data in [
            (f"{digest}.json", blob),
            *layers,
            ("manifest.json", json.dumps(manifest).encode()),
        ]:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}"


# -- pipeline --------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """One tool's result for one case: its scanned rootfs and config JSON, or an error."""

    tree: Mapping[str, oracle.Entry] | None = None
    config: Mapping[str, Any] | None = None
    error: str | None = None


def scan_and_remove(rootfs: Path, work: Path) -> dict[str, oracle.Entry]:
    """The unpacked tree as values; the unpacked copy is deleted (143 cases x 2 tools
    of busybox would otherwise keep about 600 MB on disk)."""
    tree = oracle.scan_tree(rootfs)
    oracle.remove_tree(work)
    return tree


def pipeline_cli(store: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    if not store.exists():  # a store given by PIPELINE_STORE must exist (or --init)
        store.mkdir(mode=0o700, parents=True)
    env = dict(os.environ, PIPELINE_STORE=str(store))
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pipeline_ok(store: Path, *args: str) -> str:
    proc = pipeline_cli(store, *args)
    if proc.returncode != 0:
        raise oracle.CommandError(["pipeline", *args], proc.returncode, proc.stdout + proc.stderr)
    return proc.stdout


def _hcl(value: str) -> str:
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")


def app_spec(case: Case, context: Path) -> str:
    """The spec that makes pipeline build the case (``target`` and ``secrets`` only
    when the case has them)."""
    lines = [
        f'app "{case.app}" {{',
        f"  dockerfile = {_hcl(str(case.dockerfile))}",
        f"  context    = {_hcl(str(context))}",
        f"  tags       = [{_hcl(case.tag)}]",
    ]
    if case.args:
        pairs = ", ".join(f"{_hcl(k)} = {_hcl(v)}" for k, v in case.args.items())
        lines.append(f"  args       = {{ {pairs} }}")
    if case.target:
        lines.append(f"  target     = {_hcl(case.target)}")
    if case.secrets:
        pairs = ", ".join(f"{_hcl(k)} = {_hcl(str(case.dir / v))}" for k, v in case.secrets.items())
        lines.append(f"  secrets    = {{ {pairs} }}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def build_with_pipeline(
    cases: list[Case], contexts: Mapping[str, Path], store: Path, work: Path
) -> dict[str, Built]:
    """All cases in one ``build-all`` (a case whose spec or Dockerfile pipeline refuses
    is taken out and the rest tried again), then each image exported and unpacked."""
    specs = oracle.fresh_dir(work / "specs")
    by_app = {c.app: c for c in cases}
    for case in cases:
        (specs / f"{case.app}.hcl").write_text(app_spec(case, contexts[case.name]))
    results: dict[str, Built] = {}
    report = work / "report.json"
    stderr = ""
    while any(specs.iterdir()):
        report.unlink(missing_ok=True)
        proc = pipeline_cli(
            store, "build-all", "--specs", str(specs), "--progress", "quiet",
            "--json-report", str(report),
        )  # fmt: skip
        if proc.returncode == 0 or report.exists():
            stderr = proc.stderr
            break
        message = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        app = _blamed_app(message[0] if message else "", by_app, specs)
        if app is None:
            text = "\n".join(message[-20:])
            for case in cases:
                if (specs / f"{case.app}.hcl").exists():
                    results[case.name] = Built(error=f"pipeline build-all failed: {text}")
            return results
        results[by_app[app].name] = Built(error=message[0])
        (specs / f"{app}.hcl").unlink()
    images = json.loads(report.read_text())["images"] if report.exists() else {}
    failures = _failure_lines(stderr)
    todo = []
    for case in cases:
        if case.name in results:
            continue
        if f"app.{case.app}" in images:
            todo.append(case)
        else:
            why = failures.get(case.app, "no image (pipeline reported no error for it)")
            results[case.name] = Built(error=why)

    def export(case: Case) -> tuple[str, Built]:
        out = oracle.fresh_dir(work / "out" / case.app)
        layout = out / "oci"
        try:
            pipeline_ok(store, "export", case.tag, "-o", str(layout), "--format", "oci")
            rootfs = oracle.unpack_oci_layout(layout, "latest", out / "bundle")
            config = oracle.oci_layout_config(layout)
            return case.name, Built(tree=scan_and_remove(rootfs, out), config=config)
        except oracle.CommandError as exc:
            return case.name, Built(error=f"export/unpack failed: {exc}")

    results.update(parallel(export, todo))
    return results


def _blamed_app(line: str, by_app: Mapping[str, Case], specs: Path) -> str | None:
    m = re.search(r'app "(c\d+)"', line) or re.search(r"\bapp\.(c\d+)\b", line)
    if m and m.group(1) in by_app:
        return m.group(1)
    for app, case in by_app.items():
        if (specs / f"{app}.hcl").exists() and (
            str(case.dir) + "/" in line or f"/{app}.hcl:" in line
        ):
            return app
    return None


def _failure_lines(stderr: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in stderr.splitlines():
        for app in re.findall(r"\bapp\.(c\d+)\b", line):
            out.setdefault(app, line.strip())
    return out


def parallel(fn: Callable[[Case], tuple[str, Built]], items: Iterable[Case]) -> dict[str, Built]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(fn, list(items)))


# -- BuildKit --------------------------------------------------------------------------


def build_with_buildkit(
    daemon: oracle.Dockerd, cases: list[Case], contexts: Mapping[str, Path], work: Path
) -> dict[str, Built]:
    """``docker build`` of every case that has a BuildKit Dockerfile, two at a time; one
    ``docker save`` of them all; each unpacked with skopeo + umoci."""
    results: dict[str, Built] = {}

    def build(case: Case) -> tuple[str, Built]:
        dockerfile = case.buildkit_dockerfile
        assert dockerfile is not None
        argv = ["build", "--network", "none", "-q", "-t", case.tag, "-f", str(dockerfile)]
        for key, value in case.args.items():
            argv += ["--build-arg", f"{key}={value}"]
        if case.target:
            argv += ["--target", case.target]
        for sid, rel in case.secrets.items():
            argv += ["--secret", f"id={sid},src={case.dir / rel}"]
        try:
            daemon.docker(*argv, str(contexts[case.name]))
            return case.name, Built()
        except oracle.CommandError as exc:
            lines = [ln for ln in exc.output.splitlines() if ln.strip()]
            return case.name, Built(error=" / ".join(lines[-3:]))

    built = parallel(build, [c for c in cases if c.buildkit_dockerfile is not None])
    ok = [c for c in cases if c.name in built and built[c.name].error is None]
    results.update({k: v for k, v in built.items() if v.error is not None})
    if not ok:
        return results
    work.mkdir(parents=True, exist_ok=True)
    archive = work / "buildkit.tar"
    daemon.docker("save", "-o", str(archive), *[c.tag for c in ok])
    configs = oracle.docker_archive_configs(archive)

    def unpack(case: Case) -> tuple[str, Built]:
        out = oracle.fresh_dir(work / "out" / case.app)
        try:
            rootfs = oracle.unpack_docker_image(archive, case.tag, out)
        except oracle.CommandError as exc:
            return case.name, Built(error=f"skopeo/umoci failed: {exc}")
        return case.name, Built(tree=scan_and_remove(rootfs, out), config=configs[case.tag])

    results.update(parallel(unpack, ok))
    return results
