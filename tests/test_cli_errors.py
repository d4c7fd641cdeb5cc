"""Every CLI command with bad arguments and in bad surroundings (missing or broken
store, store that is a file, damaged or locked index, unwritable HOME, read-only
store, non-root bootstrap, bad SOURCE_DATE_EPOCH, full disk, an internal error):
never a traceback, the documented exit status, and one line that starts with the
location."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.bounded import base_env, pipeline_argv, run_bounded

REPO = Path(__file__).resolve().parent.parent
SITE = next(Path(sys.prefix, "lib").glob("python3*/site-packages"))
NOBODY = 65534


@dataclass(frozen=True)
class Bad:
    id: str
    args: tuple[str, ...]
    status: int
    message: str  # regex for the one stderr line ("" for exit 0)
    store: str = "good"  # good | fresh | file | damaged | truncated
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> dict[str, Path]:
    """A store with busybox:latest, specs good and bad, a file, garbage, a plain dir."""
    root = tmp_path_factory.mktemp("world")
    store = root / "good-store"
    proc = run_bounded(
        pipeline_argv("import", str(busybox_tar), "--tag", "busybox:latest"), env=base_env(store)
    )
    assert proc.returncode == 0, proc.describe()
    specs = root / "specs"
    specs.mkdir()
    (specs / "a.hcl").write_text('app "a" {\n  from = "busybox:latest"\n  env = { A = "1" }\n}\n')
    bad = root / "bad-specs"
    bad.mkdir()
    (bad / "a.hcl").write_bytes(b'app "a" {\n  from = "busybox:\xff"\n}\n')
    (root / "a-file").write_text("not a directory\n")
    (root / "garbage").write_bytes(b"garbage\n" * 100)
    (root / "plain-dir").mkdir()
    return {
        "root": root,
        "store": store,
        "specs": specs,
        "bad": bad,
        "file": root / "a-file",
        "garbage": root / "garbage",
        "dir": root / "plain-dir",
        "tar": busybox_tar,
    }


def expand(args: tuple[str, ...], w: dict[str, Path], tmp: Path) -> list[str]:
    names = {k.upper(): str(v) for k, v in w.items()}
    names["OUT"] = str(tmp / "out")
    return [names.get(a, a) for a in args]


def copy_store(src: Path, dest: Path) -> None:
    """A copy that keeps hardlinks, owners and xattrs (a layer's tar depends on them)."""
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)


def prepare_store(kind: str, w: dict[str, Path], tmp: Path) -> Path:
    store = tmp / "store"
    if kind == "fresh":
        return tmp / "no" / "such" / "store"
    if kind == "file":
        return w["file"]
    copy_store(w["store"], store)
    index = store / "index.db"
    if kind == "damaged":
        index.write_bytes(b"this is not a database" * 100)
    elif kind == "truncated":
        os.truncate(index, 4096)
    for extra in ("index.db-wal", "index.db-shm"):
        (store / extra).unlink(missing_ok=True)
    return store


def assert_one_line(out: str, err: str, status: int, got: int, message: str, what: str) -> None:
    assert "Traceback" not in out + err, what
    assert got == status, what
    if status:
        lines = err.strip().splitlines()
        assert len(lines) == 1, what
        assert re.search(message, lines[0]), what


EPOCH = "SOURCE_DATE_EPOCH"
DAMAGED = r"index\.db: the store's index is damaged \(.*\); run `pipeline fsck`"
NOT_DIR = r"a-file: not a directory \(a store is a directory"
CASES = [
    Bad("unknown-command", ("frobnicate",), 2, r"^pipeline: No such command 'frobnicate'"),
    Bad("unknown-option", ("images", "--frob"), 2, r"^pipeline images: No such option '--frob'"),
    Bad("store-without-value", ("--store",), 2, r"Option '--store' requires an argument"),
    Bad("validate-missing-specs", ("validate", "--specs", "NOPE"), 2, r"NOPE: no such specs dir"),
    Bad(
        "validate-specs-is-a-file", ("validate", "--specs", "FILE"), 2, r"a-file:2:1: syntax error"
    ),
    Bad("validate-bad-set", ("validate", "--specs", "SPECS", "--set", "x"), 2, r"--set 'x': "),
    Bad("validate-non-utf8", ("validate", "--specs", "BAD"), 2, r"a\.hcl:2:19: not UTF-8 text"),
    Bad("plan-non-utf8", ("plan", "--specs", "BAD"), 2, r"a\.hcl:2:19: not UTF-8 text"),
    Bad("build-all-non-utf8", ("build-all", "--specs", "BAD"), 2, r"a\.hcl:2:19: not UTF-8"),
    Bad("plan-bad-format", ("plan", "--format", "pdf"), 2, r"Invalid value for '--format'"),
    Bad("build-all-missing-specs", ("build-all", "--specs", "NOPE"), 2, r"NOPE: no such specs"),
    Bad("build-all-bad-jobs", ("build-all", "-j", "many"), 2, r"'many' is not a valid integer"),
    Bad("build-unknown-app", ("build", "nosuch", "--specs", "SPECS"), 2, r"nosuch: no such app"),
    Bad("build-no-names", ("build",), 2, r"Missing argument 'NAMES\.\.\.'"),
    Bad(
        "epoch-abc",
        ("build-all", "--specs", "SPECS"),
        2,
        rf"^{EPOCH}='abc': expected a whole number of seconds",
        env={EPOCH: "abc"},
    ),
    Bad(
        "epoch-1e20", ("build-all", "--specs", "SPECS"), 2, rf"^{EPOCH}='1e20'", env={EPOCH: "1e20"}
    ),
    Bad(
        "epoch-negative", ("build-all", "--specs", "SPECS"), 2, rf"^{EPOCH}='-1'", env={EPOCH: "-1"}
    ),
    Bad("export-bad-epoch", ("export", "busybox", "-o", "OUT"), 2, rf"^{EPOCH}=", env={EPOCH: "x"}),
    Bad("images-extra-arg", ("images", "x", "y"), 2, r"Got unexpected extra argument \(y\)"),
    Bad("history-no-name", ("history",), 2, r"Missing argument 'NAME'"),
    Bad("history-unknown", ("history", "nosuch"), 2, r"^nosuch: no such image in the store"),
    Bad("inspect-unknown", ("inspect", "nosuch"), 2, r"^nosuch: no such image in the store"),
    Bad("export-unknown", ("export", "nosuch", "-o", "OUT"), 2, r"^nosuch: no such image"),
    Bad("export-no-output", ("export", "busybox"), 2, r"Missing option '-o'"),
    Bad(
        "export-missing-directory",
        ("export", "busybox", "-o", "/nonexistent/dir/out"),
        2,
        r"^/nonexistent/dir/out: cannot write there: /nonexistent/dir is not a directory",
    ),
    Bad("export-bad-format", ("export", "busybox", "-o", "OUT", "--format", "zip"), 2, r"'zip'"),
    Bad("import-missing-path", ("import", "NOPE", "--tag", "x:1"), 2, r"Path 'NOPE' does not"),
    Bad("import-no-tag", ("import", "TAR"), 2, r"Missing option '--tag'"),
    Bad("import-garbage", ("import", "GARBAGE", "--tag", "x:1"), 1, r"garbage: not a valid tar"),
    Bad("import-plain-dir", ("import", "DIR", "--tag", "x:1"), 1, r"plain-dir: neither an OCI"),
    Bad("du-extra-arg", ("du", "x"), 2, r"unexpected extra argument"),
    Bad("prune-extra-arg", ("prune", "x"), 2, r"unexpected extra argument"),
    Bad("bootstrap-unknown", ("bootstrap", "windows:11"), 2, r"^windows:11: bootstrap makes"),
    Bad("run-unknown", ("run", "nosuch"), 2, r"^nosuch: no such image in the store"),
    Bad("push-unknown", ("push", "nosuch"), 2, r"nosuch"),
    Bad("pull-bad-ref", ("pull", "::bad::"), 2, r"^::bad::: not an image reference"),
    Bad(
        "pull-unreachable",
        ("pull", "127.0.0.1:9/x:1"),
        1,
        r"^127\.0\.0\.1:9.*cannot reach",
        env={"PIPELINE_REGISTRY_RETRIES": "1"},
    ),
    Bad("pull-bad-platform", ("pull", "x:1", "--platform", "win"), 2, r"--platform win: expected"),
    Bad("fsck-extra-arg", ("fsck", "x"), 2, r"unexpected extra argument"),
    Bad("fsck-not-a-store", ("fsck",), 1, r"store: not a pipeline store", store="fresh"),
    Bad("images-missing-store-is-made", ("images",), 0, "", store="fresh"),
    *(
        Bad(f"{args[0]}-store-is-a-file", args, 1, NOT_DIR, store="file")
        for args in (
            ("images",),
            ("plan", "--specs", "SPECS"),
            ("build-all", "--specs", "SPECS"),
            ("import", "TAR", "--tag", "x:1"),
            ("du",),
            ("prune",),
            ("history", "busybox"),
            ("fsck",),
        )
    ),
    *(
        Bad(f"{args[0]}-{kind}-index", args, 1, DAMAGED, store=kind)
        for kind in ("damaged", "truncated")
        for args in (
            ("images",),
            ("plan", "--specs", "SPECS"),
            ("build-all", "--specs", "SPECS"),
            ("import", "TAR", "--tag", "x:1"),
            ("export", "busybox", "-o", "OUT"),
            ("du",),
            ("prune",),
        )
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_arguments(tmp_path: Path, world: dict[str, Path], case: Bad) -> None:
    store = prepare_store(case.store, world, tmp_path)
    env = base_env(store, **case.env)
    out = run_bounded(pipeline_argv(*expand(case.args, world, tmp_path)), cwd=tmp_path, env=env)
    assert_one_line(
        out.stdout, out.stderr, case.status, out.returncode, case.message, out.describe()
    )
    assert out.seconds < 30, out.describe()


def test_no_command_shows_help(tmp_path: Path) -> None:
    out = run_bounded(pipeline_argv(), env=base_env(tmp_path / "s"))
    assert out.returncode == 2 and out.stderr.startswith("Usage: pipeline"), out.describe()
    assert "Traceback" not in out.stderr


def test_fsck_reports_a_damaged_index(tmp_path: Path, world: dict[str, Path]) -> None:
    store = prepare_store("damaged", world, tmp_path)
    out = run_bounded(pipeline_argv("fsck"), env=base_env(store))
    assert out.returncode == 1 and out.stderr == "", out.describe()
    assert re.search(r"index\.db: damaged: not a SQLite database", out.stdout), out.describe()


# ---------------------------------------------------------------------------------------
# an internal error, a locked index


def test_internal_error_is_one_line_and_a_log_file(tmp_path: Path, world: dict[str, Path]) -> None:
    store = prepare_store("good", world, tmp_path)
    code = textwrap.dedent(
        """
        import sys
        import pipeline.build.images as images
        def broken(*args, **kwargs):
            raise RuntimeError("the \\x1b[31mdisk\\u202e melted")
        images.load_image = broken
        sys.argv = ["pipeline", "images"]
        from pipeline.cli.main import run
        run()
        """
    )
    out = run_bounded([sys.executable, "-c", code], env=base_env(store))
    assert out.returncode == 70, out.describe()
    match = re.fullmatch(
        r"internal error: RuntimeError: the \\x1b\[31mdisk\\u202e melted "
        r"\(details: (.*/logs/internal-\d{8}T\d{6}-\d+\.log)\)\n",
        out.stderr,
    )
    assert match, out.describe()
    log = Path(match.group(1))
    assert log.parent == store / "logs"
    assert "Traceback (most recent call last)" in log.read_text()
    assert "RuntimeError" in log.read_text() and "Traceback" not in out.stdout + out.stderr


@pytest.fixture
def locked_index(tmp_path: Path, world: dict[str, Path]) -> Iterator[Path]:
    """A store whose index another process holds in exclusive locking mode."""
    store = prepare_store("good", world, tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(store / 'index.db')!r}, isolation_level=None)\n"
            "db.execute('PRAGMA locking_mode=EXCLUSIVE')\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "db.execute('UPDATE images SET updated=updated')\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    yield store
    holder.send_signal(signal.SIGKILL)
    holder.wait()


def test_locked_index_is_one_line(locked_index: Path) -> None:
    env = base_env(locked_index, PIPELINE_LIMIT_INDEX_WAIT_SECONDS="1")
    for args in (("images",), ("du",), ("prune",)):
        out = run_bounded(pipeline_argv(*args), env=env)
        assert_one_line(
            out.stdout,
            out.stderr,
            1,
            out.returncode,
            r"index\.db: the store's index stayed locked by another process for 1 s; .*"
            r"`pipeline fsck --repair` rebuilds the index",
            out.describe(),
        )
        assert out.seconds < 15, out.describe()


# ---------------------------------------------------------------------------------------
# as a user who is not root


def as_nobody(args: list[str], home: Path | str, cwd: Path, **env: str) -> tuple[int, str, str]:
    """Run the CLI as uid/gid 65534 with Debian's python3 and our code on PYTHONPATH
    (the venv's interpreter lives under /root, which nobody may enter)."""

    def drop() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    full = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{SITE}", "HOME": str(home), **env}
    out = run_bounded(
        ["/usr/bin/python3", "-m", "pipeline", *args], cwd=cwd, env=full, preexec=drop
    )
    return out.returncode, out.stdout, out.stderr


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to nobody needs root")


@pytest.fixture
def public(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    for parent in tmp_path.parents:
        if parent == Path("/tmp") or parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o055)
    work = tmp_path / "public"
    work.mkdir(mode=0o777)
    work.chmod(0o777)
    return work


@needs_root
def test_unwritable_or_missing_home(public: Path) -> None:
    for home, message in (
        ("/root", r"^/root/\.cache/pipeline: cannot use the store: Permission denied"),
        ("/nonexistent", r"^/nonexistent/\.cache/pipeline: cannot create the store: Perm"),
    ):
        code, out, err = as_nobody(["images"], home, public)
        assert_one_line(out, err, 1, code, message, f"{home}: {code} {out} {err}")


@needs_root
def test_bootstrap_as_non_root(public: Path) -> None:
    code, out, err = as_nobody(["bootstrap", "busybox:latest"], public, public)
    assert_one_line(out, err, 1, code, r"^busybox:latest: bootstrap needs root", err)
    assert not any((public / ".cache/pipeline/tmp").iterdir())


@needs_root
def test_read_only_store(public: Path, world: dict[str, Path]) -> None:
    """A store the user cannot write: reading commands work, writing ones say why. A
    private store (0700 dirs, as every store is: it holds other people's setuid files)
    is refused in one line by every command."""
    store = public / "store"
    copy_store(world["store"], store)
    shutil.copytree(world["specs"], public / "specs")
    shutil.copy(world["tar"], public / "busybox.tar")
    private = r"cannot read the store: it is private to its owner"
    for args in (("images",), ("plan", "--specs", str(public / "specs")), ("du",)):
        code, out, err = as_nobody(["--store", str(store), *args], public, public)
        assert_one_line(out, err, 1, code, private, f"{args}: {code} {out} {err}")
    for path in (store, public / "specs", *(p for p in store.rglob("*") if p.is_dir())):
        os.chmod(path, 0o755)  # an owner who chose to share it read-only
    (store / "index.db").chmod(0o644)
    for args in (("images",), ("plan", "--specs", str(public / "specs")), ("du",)):
        code, out, err = as_nobody(["--store", str(store), *args], public, public)
        assert code == 0 and "Traceback" not in out + err, (args, out, err)
    assert "busybox:latest" in as_nobody(["--store", str(store), "images"], public, public)[1]
    read_only = r"store: the store is read-only for this user"
    for args, message in (
        (("build-all", "--specs", str(public / "specs")), read_only),
        (("import", str(public / "busybox.tar"), "--tag", "x:1"), read_only),
        (("prune",), read_only),
        (("fsck",), r"store: fsck needs write access"),
    ):
        code, out, err = as_nobody(["--store", str(store), *args], public, public)
        assert_one_line(out, err, 1, code, message, f"{args}: {code} {out} {err}")


# ---------------------------------------------------------------------------------------
# a full disk


@needs_root
def test_export_onto_a_full_disk(tmp_path: Path, world: dict[str, Path]) -> None:
    """Export into a 64 KiB tmpfs (in a private mount namespace): one line, exit 1,
    and no ``.NAME.partial`` left behind."""
    store = prepare_store("good", world, tmp_path)
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        f"mount -t tmpfs -o size=64k tmpfs {disk} && "
        f"{sys.executable} -m pipeline export busybox:latest -o {disk}/out "
        '--format docker-archive; echo "status=$?"; ls -A ' + str(disk)
    )
    out = run_bounded(["unshare", "-m", "sh", "-c", script], env=base_env(store))
    assert "Traceback" not in out.stdout + out.stderr, out.describe()
    assert re.fullmatch(r".*/disk/out: export failed: No space left on device\n", out.stderr), (
        out.describe()
    )
    assert out.stdout.strip() == "status=1", out.describe()  # and ls printed nothing
