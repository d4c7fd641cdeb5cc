r"""Build contexts: ignore files, selecting what a COPY takes, and content digests.

Reads files only; never writes outside its own stat-cache file.

Paths are hostile until checked. A COPY source is resolved one component at a time
below the (resolved) context root; a symlink met on the way is followed only while
its target stays inside the context, and nothing outside the context is ever
listed, stat-ed or opened. Inside a selected directory tree, symlinks are taken as
symlinks (never followed) and special files (fifos, sockets, devices) are skipped.

Semantics follow Docker's COPY:

* a source names a file, a directory (meaning everything below it, not the directory
  itself), or a glob in Go ``filepath.Match`` style, matched one path component at a
  time (``*``, ``?``, ``[a-z]``, ``[^a]``, ``\`` escapes; ``**`` is just ``*``;
  leading dots are not special); ``"."`` is the whole context;
* a source that is a symlink (or a glob match that is one) is followed, so COPY
  takes the file or directory it points to, under the source's own name;
* the ignore patterns (gitignore syntax, ``!`` re-includes) are matched against
  paths relative to the context root, directories with a trailing ``/``; an
  ignored path does not exist for COPY. A re-included file below an ignored
  directory is still taken (Docker's behaviour, unlike git's). The ignore file
  itself is an ordinary file: copyable unless a pattern ignores it.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.errors import Location, SpecError, UnsafePathError
from pipeline.fs.patterns import DOCKER_RULES, compile_ignore, glob_regex, is_glob

IGNORE_FILES = (".pipelineignore", ".dockerignore")

CHUNK = 1 << 20
"""Files are hashed in chunks of this many bytes."""

MAX_SYMLINKS = 40
"""Symlinks followed while resolving one source before giving up (as Linux does)."""

DIGEST_FORMAT = b"pipeline-context-v1"
"""The first bytes hashed by ``ContextHasher.digest``; bump it when the encoding changes."""

CACHE_FORMAT = "pipeline-context-stat-cache"
CACHE_VERSION = 1

EntryKind = Literal["file", "dir", "symlink"]
StatKey = tuple[int, int, int, int]
"""(size, mtime_ns, inode, ctime_ns) of a file: unchanged key, unchanged content."""


def read_ignore(context: Path) -> tuple[str, ...]:
    """Patterns of the context's ignore file: ``.pipelineignore`` (gitignore rules) if
    present, else ``.dockerignore`` (Docker's rules: the patterns come after the marker
    :data:`~pipeline.fs.patterns.DOCKER_RULES`), else none. Blank lines and ``#``
    comments are dropped."""
    for name in IGNORE_FILES:
        path = context / name
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = tuple(s for s in (ln.strip() for ln in lines) if s and not s.startswith("#"))
            return (DOCKER_RULES, *kept) if name == ".dockerignore" and kept else kept
    return ()


class ContextError(SpecError):
    """A COPY source the build context cannot provide (missing, ignored, bad glob,
    a special file). Exit status 2.

    Carries ``context``, ``source`` and ``reason``; the message is
    ``<context>: COPY source "<source>": <reason>``. The compiler, which knows the
    step's location, can re-raise it located with ``at()``.
    """

    def __init__(self, context: Path | str, source: str, reason: str) -> None:
        self.context = str(context)
        self.source = source
        self.reason = reason
        super().__init__(None, f'{context}: COPY source "{source}": {reason}')

    def at(self, loc: Location | None, block: str | None = None, what: str = "COPY") -> SpecError:
        """The same error as a SpecError located at a spec or Dockerfile step."""
        return SpecError(
            loc, f'{what} source "{self.source}": {self.reason} (context {self.context})', block
        )


@dataclass(frozen=True)
class Entry:
    """One thing a COPY takes from the build context.

    ``rel`` is the posix path relative to the COPY destination *directory*:

    * a source that names (or a glob that matches) a file gives one entry whose
      ``rel`` is the name as matched (the last component of the source, not of a
      symlink's target), with ``top=True``; Docker's one special case is left to
      the copier: when the whole COPY selects exactly one such entry and the
      destination does not end with ``/``, the destination is the file's path
      itself (unless it is an existing directory in the image);
    * a source that names (or a glob that matches) a directory gives an entry for
      everything below it, with ``rel`` relative to that directory (the directory
      itself is not an entry; the copier creates the destination directory);
      so ``"."`` gives paths relative to the context root.

    Several sources may give the same ``rel``: the later one wins, as in Docker.
    Entries come in source order, each directory walk sorted by name with a parent
    before its children. A directory kept only because it holds a re-included
    file (``!pattern``) below an ignored directory is not an entry; the copier
    creates missing parents (0755, as Docker does).

    ``path`` is the absolute on-disk path (inside the context, symlinks along the
    source resolved). ``mode`` holds the permission bits (``st_mode & 0o7777``).
    ``size`` is the byte size for files (0 otherwise). ``target`` is the link text of
    a symlink, verbatim and never followed (it may point anywhere; the copier
    writes it as a symlink). ``source`` is the COPY source (as written) that
    selected the entry. ``stat_key`` is the stat fingerprint used by the stat
    cache; it is not part of the entry's identity.
    """

    rel: str
    path: Path
    kind: EntryKind
    mode: int
    size: int = 0
    target: str = ""
    top: bool = False
    source: str = ""
    stat_key: StatKey = field(default=(0, 0, 0, 0), compare=False, repr=False)


# ---------------------------------------------------------------------------
# resolving sources safely


class _Resolver:
    """Resolves source paths below one context root without leaving it."""

    def __init__(self, context: Path, ignore: Sequence[str]) -> None:
        self.where = str(context)
        try:
            self.root = context.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise SpecError(None, f"{context}: build context does not exist") from None
        if not self.root.is_dir():
            raise SpecError(None, f"{context}: build context is not a directory")
        # Absolute symlink targets may spell the root either way.
        self.prefixes = tuple({str(self.root), os.path.abspath(context)})
        self.ignore = compile_ignore(self.where, tuple(ignore))

    def unsafe(self, source: str, reason: str) -> UnsafePathError:
        return UnsafePathError(self.where, source, reason)

    def components(self, source: str) -> list[str]:
        """The normalised components of a source; refuses absolute and escaping ones."""
        if source.startswith("/"):
            raise self.unsafe(source, "absolute path; COPY sources are relative to the context")
        norm = posixpath.normpath(source) if source else "."
        if norm == ".." or norm.startswith("../"):
            raise self.unsafe(source, "leaves the build context")
        return [] if norm == "." else norm.split("/")

    def follow(self, source: str, start: Path, comps: list[str]) -> Path | None:
        """``start`` (a real directory inside the root) joined with ``comps``, every
        symlink on the way followed while it stays inside the root. None when
        something does not exist (or is not a directory where one is needed)."""
        pending = list(reversed(comps))
        cur = start
        links = 0
        via = ""  # the last symlink followed, for messages
        while pending:
            comp = pending.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if cur == self.root:
                    raise self.unsafe(source, f"symlink {via} leaves the build context")
                cur = cur.parent
                continue
            nxt = cur / comp
            try:
                st = os.lstat(nxt)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if pending and not (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                return None
            if not stat.S_ISLNK(st.st_mode):
                cur = nxt
                continue
            links += 1
            if links > MAX_SYMLINKS:
                raise self.unsafe(source, "too many levels of symlinks")
            target = os.readlink(nxt)
            via = f"{nxt.relative_to(self.root).as_posix()} -> {target}"
            if os.path.isabs(target):
                inside = self._inside(posixpath.normpath(target))
                if inside is None:
                    raise self.unsafe(source, f"symlink {via} leaves the build context")
                cur = self.root
                pending.extend(reversed(inside))
            else:
                pending.extend(reversed(target.split("/")))
        return cur

    def _inside(self, abs_target: str) -> list[str] | None:
        for prefix in self.prefixes:
            if abs_target == prefix:
                return []
            if abs_target.startswith(prefix.rstrip("/") + "/"):
                return abs_target[len(prefix.rstrip("/")) + 1 :].split("/")
        return None

    def matches(self, source: str) -> list[tuple[str, Path]]:
        """Every (lexical context-relative path, real path) the source names."""
        comps = self.components(source)
        found: list[tuple[str, Path]] = [("", self.root)]
        for comp in comps:
            nxt: list[tuple[str, Path]] = []
            for lex, real in found:
                if not is_glob(comp):
                    hit = self.follow(source, real, [comp])
                    if hit is not None:
                        nxt.append((posixpath.join(lex, comp), hit))
                    continue
                try:
                    rx = glob_regex(comp)
                except ValueError as exc:
                    raise ContextError(self.where, source, str(exc)) from None
                if not real.is_dir():
                    continue
                for name in sorted(os.listdir(real)):
                    if rx.fullmatch(name):
                        hit = self.follow(source, real, [name])
                        if hit is not None:
                            nxt.append((posixpath.join(lex, name), hit))
            found = nxt
        return found

    def ctx_rel(self, real: Path) -> str:
        return "" if real == self.root else real.relative_to(self.root).as_posix()


def stat_key_of(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _walk(r: _Resolver, top: Path, source: str, prefix: str) -> Iterator[Entry]:
    """Entries below the real directory ``top`` (not ``top`` itself), sorted by name,
    parents first, never following symlinks; ``prefix`` is prepended to ``rel``.
    Iterative (a context may nest deeper than Python's recursion limit); one
    directory is open at a time."""
    stack: list[Iterator[Entry | tuple[Path, str]]] = [_walk_dir(r, top, source, prefix)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if isinstance(entry, tuple):  # a subdirectory to descend into
            path, rel = entry
            stack.append(_walk_dir(r, path, source, rel))
            continue
        yield entry


def _walk_dir(
    r: _Resolver, top: Path, source: str, prefix: str
) -> Iterator[Entry | tuple[Path, str]]:
    """One directory's entries, sorted by name, each directory followed by the marker
    ``(path, rel)`` asking :func:`_walk` to descend into it."""
    ctx_prefix = r.ctx_rel(top)
    try:
        with os.scandir(top) as it:
            dirents = sorted(it, key=lambda d: d.name)
    except NotADirectoryError:  # replaced while we looked; nothing to take
        return
    for d in dirents:
        try:
            st = d.stat(follow_symlinks=False)
        except FileNotFoundError:  # removed while we looked
            continue
        rel = posixpath.join(prefix, d.name) if prefix else d.name
        ctx = posixpath.join(ctx_prefix, d.name) if ctx_prefix else d.name
        mode = stat.S_IMODE(st.st_mode)
        path = Path(d.path)
        if stat.S_ISDIR(st.st_mode):
            hidden = r.ignore.ignored(ctx, is_dir=True)
            if not hidden:
                yield Entry(rel, path, "dir", mode, 0, "", False, source, stat_key_of(st))
            if not hidden or r.ignore.has_negation:
                _check_depth(r, source, d.path, ctx)
                yield (path, rel)
        elif r.ignore.ignored(ctx, is_dir=False):
            continue
        elif stat.S_ISREG(st.st_mode):
            yield Entry(rel, path, "file", mode, st.st_size, "", False, source, stat_key_of(st))
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            yield Entry(rel, path, "symlink", mode, 0, target, False, source, stat_key_of(st))
        # fifos, sockets and devices are skipped


def _check_depth(r: _Resolver, source: str, path: str, ctx: str) -> None:
    """Refuse to descend into ``path`` (``ctx`` below the context) when its entries
    would be deeper than ``Limits.path_depth`` or longer than Linux opens (PATH_MAX)."""
    from pipeline.limits import current, over, shown_name

    limits = current()
    depth = ctx.count("/") + 2  # the depth of the entries inside
    if depth > limits.path_depth:
        raise ContextError(
            r.where,
            source,
            f"{shown_name(ctx)}: entries {depth:,} levels deep; "
            + over("path_depth", limits.path_depth, "levels"),
        )
    if len(os.fsencode(path)) + 2 > 4095:
        raise ContextError(
            r.where, source, f"{shown_name(ctx)}: paths below it are longer than Linux opens"
        )


def _select_one(r: _Resolver, source: str, walk: bool = True) -> list[Entry]:
    out: list[Entry] = []
    taken = excluded = special = False
    for lex, real in r.matches(source):
        st = os.lstat(real)
        ctx = r.ctx_rel(real)
        if stat.S_ISDIR(st.st_mode):
            hidden = r.ignore.ignored(ctx, is_dir=True) or r.ignore.ignored(lex, is_dir=True)
            if hidden and not r.ignore.has_negation:
                excluded = True
                continue
            if hidden and not any(_walk(r, real, source, "")):
                excluded = True
                continue
            taken = True
            if walk:
                out.extend(_walk(r, real, source, ""))
        elif r.ignore.ignored(ctx, is_dir=False) or r.ignore.ignored(lex, is_dir=False):
            excluded = True
        elif stat.S_ISREG(st.st_mode):
            taken = True
            name = posixpath.basename(lex)
            mode = stat.S_IMODE(st.st_mode)
            out.append(
                Entry(name, real, "file", mode, st.st_size, "", True, source, stat_key_of(st))
            )
        else:
            special = True
    if taken:
        return out
    if excluded:
        raise ContextError(r.where, source, "excluded by the context's ignore file")
    if special:
        raise ContextError(r.where, source, "not a regular file, directory or symlink")
    raise ContextError(r.where, source, "no such file or directory in the build context")


def select(context: Path, sources: Sequence[str], ignore: Sequence[str]) -> list[Entry]:
    """What ``COPY <sources> <dest>`` takes from ``context`` (Docker semantics; see
    the module docstring and ``Entry`` for the exact layout). Reads directory
    listings and file metadata only, never file contents.

    Raises ``UnsafePathError`` for an absolute source, a source whose ``..`` leaves
    the context, or one that goes through a symlink pointing outside the context;
    ``ContextError`` when a source matches nothing (missing, or only ignored or
    special files), or is a malformed glob; ``SpecError`` when the context is not a
    directory or an ignore pattern is malformed.
    """
    r = _Resolver(context, ignore)
    out: list[Entry] = []
    for source in sources:
        out.extend(_select_one(r, source))
    return out


def check_sources(context: Path, sources: Sequence[str], ignore: Sequence[str]) -> None:
    """Raise as ``select`` would, without walking the selected directories (only
    the components of each source are looked at, and globs list their directories).
    For front ends that want to report a bad source at its spec or Dockerfile line."""
    r = _Resolver(context, ignore)
    for source in sources:
        _select_one(r, source, walk=False)


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def looks_like_archive(path: Path) -> bool:
    """True when Docker's ADD would unpack this file: a tar archive, plain or
    compressed (gzip, bzip2, xz; zstd by its magic alone). Reads at most a few
    blocks, without following a symlink."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return False
        head = f.read(8)
        if head.startswith(_ZSTD_MAGIC):
            return True
        f.seek(0)
        try:
            with tarfile.open(fileobj=f, mode="r:*") as tar:
                return tar.next() is not None
        except (tarfile.TarError, OSError, EOFError, ValueError):
            return False


def layout(entries: Sequence[Entry]) -> list[Entry]:
    """The destination layout of ``entries``: one entry per ``rel``, the later one
    winning (as a later COPY source overwrites an earlier one), sorted by ``rel``
    (as UTF-8 bytes; undecodable names are kept via surrogate escapes)."""
    final: dict[str, Entry] = {}
    for e in entries:
        final[e.rel] = e
    return [final[k] for k in sorted(final, key=fs_bytes)]


def fs_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")
