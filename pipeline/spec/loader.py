"""Loading a specs directory into a frozen :class:`~pipeline.model.Fleet`.

:func:`load_fleet` is the entry point; the stages live in :mod:`.variables` (blocks,
variables, locals, typed attributes), :mod:`.blocks` (images and steps) and here (apps,
``inherits``, ``matrix``, Dockerfile apps, groups, reference checks).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import Location, SpecError, did_you_mean
from pipeline.hcl.files import ParseCache, parse_file
from pipeline.hcl.values import (
    BlockRef,
    Namespace,
    Scope,
)
from pipeline.limits import current as current_limits
from pipeline.limits import over
from pipeline.model import (
    Copy,
    Fleet,
    ImageDef,
)
from pipeline.spec.blocks import BlockLoader
from pipeline.spec.lower import AppFields, lower_app, order_apt
from pipeline.spec.schema import (
    APP_ATTRS,
    GROUP_ATTRS,
    NOT_INHERITED,
    NOT_WITH_DOCKERFILE,
    ONLY_WITH_DOCKERFILE,
    Decl,
    Val,
    abs_path,
    as_command,
    as_pairs,
    in_block,
    label_of,
    merge_into,
    sanitise_name,
)


class Loader(BlockLoader):
    """The whole loader: apps (``inherits``, ``matrix``, Dockerfile apps), groups, and
    the reference checks, on top of the variable and block stages."""

    # ---- top level

    def load(self) -> Fleet:
        for file in self.files:
            self.collect(file)
        self.load_variables()
        self.scope = {
            "var": Namespace.of("var", self.variables),
            "local": Namespace("local", self.locals, self.local),
            "image": Namespace.blocks("image", [d.name for d in self.of_kind("image")]),
            "app": Namespace.blocks("app", [d.name for d in self.of_kind("app")]),
            "group": Namespace.blocks("group", [d.name for d in self.of_kind("group")]),
        }
        for name, (attr, _) in self.locals.items():
            self.local(name, attr.loc)  # every local is checked, used or not
        for decl in self.of_kind("app"):
            self.expand_matrix(decl)
        self.scope["app"] = Namespace.blocks("app", {*self.app_names, *self.matrix_apps})
        images: dict[str, ImageDef] = {}
        for decl in self.of_kind("image"):
            image = self.image(decl)
            images[image.id] = image
        for decl in self.of_kind("app"):
            for image in self.apps(decl):
                if image.id in images:
                    raise SpecError(
                        image.loc, f"{image.id} is defined twice", block=decl.label
                    )  # pragma: no cover - names are checked earlier
                images[image.id] = image
        self.check_references(images)
        if self.factoring:
            images = order_apt(images, frozenset(self.unfactored))
        groups = {d.name: self.group(d, ()) for d in self.of_kind("group")}
        return Fleet(
            images=dict(sorted(images.items())),
            groups=dict(sorted(groups.items())),
            files=tuple(f.path for f in self.files),
        )

    def expand_matrix(self, decl: Decl) -> None:
        """Evaluate ``matrix``/``name``; record the apps a matrix block makes."""
        block = decl.block
        with in_block(decl.label):
            matrix_attr, name_attr = decl.attr("matrix"), decl.attr("name")
            matrix = self.checked(matrix_attr, "matrix", self.scope, "") if matrix_attr else None
            if matrix is None:
                if name_attr is not None:
                    raise SpecError(
                        name_attr.loc, 'attribute "name" only applies together with "matrix"'
                    )
                return
            assert isinstance(matrix, dict) and matrix_attr is not None
            for key, values in matrix.items():
                if not values:
                    raise SpecError(matrix_attr.loc, f'attribute "matrix": "{key}" has no values')
            if not matrix:
                raise SpecError(matrix_attr.loc, 'attribute "matrix": no keys')
            keys = sorted(matrix)
            count = math.prod(len(matrix[k]) for k in keys)
            limit = current_limits().spec_blocks
            if count > limit:
                raise SpecError(
                    matrix_attr.loc,
                    f'attribute "matrix": makes {count:,} apps; '
                    + over("spec_blocks", limit, "blocks"),
                )
            made: list[tuple[str, Mapping[str, str]]] = []
            seen: set[str] = set()
            for combo in itertools.product(*(matrix[k] for k in keys)):
                values = dict(zip(keys, combo, strict=True))
                scope = {**self.scope, "matrix": Namespace.of("matrix", values)}
                if name_attr is not None:
                    raw = self.checked(name_attr, "string", scope, "")
                    if raw is None:
                        raise SpecError(name_attr.loc, 'attribute "name" is null')
                else:
                    raw = "-".join([decl.name, *combo])
                name = sanitise_name(str(raw))
                if not name or name in seen:
                    raise SpecError(
                        (name_attr or matrix_attr).loc,
                        f'the matrix makes the app name "{name}" twice; '
                        'use every matrix key in "name"',
                    )
                if name in self.app_names:
                    raise SpecError(
                        (name_attr or matrix_attr).loc,
                        f'the matrix makes the app name "{name}", '
                        f"already defined at {self.app_names[name]}",
                    )
                seen.add(name)
                made.append((name, values))
            for name, _ in made:
                self.app_names[name] = block.loc
            del self.app_names[decl.name]
            self.matrix_apps[decl.name] = tuple(made)

    def parents(self, decl: Decl) -> list[str]:
        """App block names listed in ``inherits``, in order."""
        attr = decl.attr("inherits")
        if attr is None:
            return []
        value = self.checked(attr, "refs", self.scope, "")
        names = []
        assert value is None or isinstance(value, tuple)
        for item in value or ():
            assert isinstance(item, BlockRef | str)
            if isinstance(item, BlockRef):
                if item.kind != "app":
                    raise SpecError(
                        item.loc or attr.loc,
                        f'attribute "inherits": expected app blocks, found {item.id}',
                    )
                name = item.name
            else:
                name = item.removeprefix("app.")
            loc = item.loc if isinstance(item, BlockRef) and item.loc else attr.loc
            if ("app", name) not in self.decls:
                blocks = sorted(n for k, n in self.decls if k == "app")
                if name in self.app_names:
                    raise SpecError(
                        loc,
                        f'attribute "inherits": app.{name} is made by a matrix; '
                        "inherit from an app block",
                    )
                hint = did_you_mean(name, blocks)
                raise SpecError(
                    loc,
                    f'attribute "inherits": unknown app "{name}"',
                    hint=hint,
                )
            if name in self.matrix_apps:
                raise SpecError(
                    loc,
                    f'attribute "inherits": cannot inherit from app.{name}, a matrix block',
                )
            names.append(name)
        return names

    def cycle_error(
        self, kind: str, attr_name: str, what: str, trail: tuple[str, ...], name: str
    ) -> SpecError:
        """The error for ``name`` met again on ``trail``: located at the ``attr_name``
        attribute of the cycle's first block, printing the cycle."""
        cycle = [*trail[trail.index(name) :], name]
        first = self.decls[(kind, cycle[0])]
        attr = first.attr(attr_name)
        return SpecError(
            attr.loc if attr else first.block.loc,
            f"{what}: " + " -> ".join(f"{kind}.{n}" for n in cycle),
            block=first.label,
        )

    def merged(self, decl: Decl, trail: tuple[str, ...], scope: Scope) -> dict[str, Val]:
        """The attributes of app ``decl`` after ``inherits``: parents in list order,
        then its own; env/labels/args merge key-wise, everything else is replaced."""
        if decl.name in trail:
            raise self.cycle_error("app", "inherits", "inherits cycle", trail, decl.name)
        with in_block(decl.label):
            for nested in decl.block.blocks:
                raise SpecError(
                    nested.loc,
                    f'unexpected block "{nested.type}" '
                    "(app blocks take attributes only; steps belong in an image block)",
                )
            parent_names = self.parents(decl)
        out: dict[str, Val] = {}
        for name in parent_names:
            parent = self.resolved_app(name, (*trail, decl.name))
            merge_into(out, {k: v for k, v in parent.items() if k not in NOT_INHERITED})
        with in_block(decl.label):
            own = self.attrs(decl.block, APP_ATTRS, scope, decl.dir, skip=NOT_INHERITED)
        merge_into(out, own)
        return out

    def resolved_app(self, name: str, trail: tuple[str, ...]) -> dict[str, Val]:
        if name not in self.resolved:
            self.resolved[name] = self.merged(self.decls[("app", name)], trail, self.scope)
        return self.resolved[name]

    def apps(self, decl: Decl) -> list[ImageDef]:
        if decl.name not in self.matrix_apps:
            vals = self.resolved_app(decl.name, ())
            with in_block(decl.label):
                return self.app(decl, decl.name, vals)
        out = []
        for name, values in self.matrix_apps[decl.name]:
            scope = {**self.scope, "matrix": Namespace.of("matrix", values)}
            vals = self.merged(decl, (), scope)
            with in_block(decl.label):
                out.extend(self.app(decl, name, vals))
        return out

    def app(self, decl: Decl, name: str, vals: Mapping[str, Val]) -> list[ImageDef]:
        app_id = f"app.{name}"
        block = decl.block
        if "dockerfile" in vals:
            return self.dockerfile_app(decl, app_id, vals)
        for key in ONLY_WITH_DOCKERFILE:
            if key in vals:
                raise SpecError(
                    vals[key].loc,
                    f'attribute "{key}" only applies together with "dockerfile"',
                    block=vals[key].block,
                )
        if "from" not in vals:
            raise SpecError(block.loc, 'missing required attribute "from"', block=decl.label)
        with in_block(vals["from"].block):
            base = self.base(vals["from"])
        source = ""
        ignore: tuple[str, ...] = ()
        if "source" in vals:
            path = self.directory(vals["source"], "source")
            source, ignore = str(path), self.ignore(path)

        def strings(key: str) -> tuple[str, ...]:
            value = vals[key].value if key in vals else ()
            assert isinstance(value, tuple)
            return value

        def text(key: str) -> str:
            return str(vals[key].value) if key in vals else ""

        def loc(key: str) -> Location | None:
            return vals[key].loc if key in vals else None

        fields = AppFields(
            id=app_id,
            base=base,
            apt=strings("apt"),
            pip=strings("pip"),
            factoring=bool(vals["factoring"].value) if "factoring" in vals else True,
            source=source,
            ignore=ignore,
            workdir=text("workdir"),
            env=as_pairs(vals["env"].value) if "env" in vals else (),
            user=text("user"),
            expose=self.ports(vals["expose"]) if "expose" in vals else (),
            labels=as_pairs(vals["labels"].value) if "labels" in vals else (),
            entrypoint=as_command(vals["entrypoint"].value) if "entrypoint" in vals else None,
            cmd=as_command(vals["cmd"].value) if "cmd" in vals else None,
            tags=strings("tags"),
            loc=block.loc,
            apt_loc=loc("apt"),
            pip_loc=loc("pip"),
            source_loc=loc("source"),
        )
        if not fields.factoring:
            self.unfactored.add(app_id)
        return [lower_app(fields)]

    def dockerfile_app(self, decl: Decl, app_id: str, vals: Mapping[str, Val]) -> list[ImageDef]:
        for key in NOT_WITH_DOCKERFILE:
            if key in vals:
                raise SpecError(
                    vals[key].loc,
                    f'attribute "{key}" cannot be used together with "dockerfile"',
                    block=vals[key].block,
                )
        val = vals["dockerfile"]
        assert isinstance(val.value, str)
        path = abs_path(val.dir, val.value)
        if not path.is_file():
            raise SpecError(val.loc, f"dockerfile not found: {path}", block=val.block)
        context = self.directory(vals["context"], "context") if "context" in vals else path.parent
        args = vals["args"].value if "args" in vals else {}
        assert isinstance(args, dict)
        tags = vals["tags"].value if "tags" in vals else ()
        assert isinstance(tags, tuple)
        from pipeline.spec.dockerfile import load_dockerfile

        stage: dict[str, Any] = {"target": str(vals["target"].value)} if "target" in vals else {}
        defs = load_dockerfile(path, app_id, context, dict(args), tags, val.loc, **stage)
        extra = self.meta_steps(vals)
        if not extra:
            return list(defs)
        return [
            ImageDef(d.id, d.base, (*d.steps, *extra), d.tags, d.is_app, d.loc)
            if d.id == app_id
            else d
            for d in defs
        ]

    # ---- groups

    def group(self, decl: Decl, trail: tuple[str, ...]) -> tuple[str, ...]:
        if decl.name in trail:
            raise self.cycle_error("group", "targets", "reference cycle", trail, decl.name)
        with in_block(decl.label):
            self.no_blocks(decl.block, ())
            vals = self.attrs(decl.block, GROUP_ATTRS, self.scope, decl.dir)
            targets = self.required(vals, "targets", decl.block.loc)
            out: list[str] = []
            assert isinstance(targets.value, tuple)
            for item in targets.value:
                for target in self.target(item, targets.loc, (*trail, decl.name)):
                    if target not in out:
                        out.append(target)
            return tuple(out)

    def target(self, item: object, loc: Location, trail: tuple[str, ...]) -> tuple[str, ...]:
        if isinstance(item, BlockRef):
            kind, name, where = item.kind, item.name, item.loc or loc
        else:
            assert isinstance(item, str)
            prefix, _, rest = item.partition(".")
            kind, name = (prefix, rest) if prefix in ("app", "image", "group") else ("", item)
            where = loc
            if not kind:
                found = [
                    k
                    for k, known in (
                        ("app", name in self.app_names or name in self.matrix_apps),
                        ("image", ("image", name) in self.decls),
                        ("group", ("group", name) in self.decls),
                    )
                    if known
                ]
                if len(found) > 1:
                    options = " or ".join(f"{k}.{name}" for k in found)
                    raise SpecError(
                        loc, f'attribute "targets": "{name}" is ambiguous; write {options}'
                    )
                if not found:
                    choices = sorted(
                        {*self.app_names, *self.matrix_apps, *(n for _, n in self.decls)}
                    )
                    raise SpecError(
                        loc,
                        f'attribute "targets": unknown target "{name}"',
                        hint=did_you_mean(name, choices),
                    )
                kind = found[0]
        if kind == "group":
            if ("group", name) not in self.decls:
                raise SpecError(where, f'attribute "targets": unknown target "group.{name}"')
            return self.group(self.decls[("group", name)], trail)
        if kind == "app" and name in self.matrix_apps:
            return tuple(f"app.{n}" for n, _ in self.matrix_apps[name])
        known = name in self.app_names if kind == "app" else ("image", name) in self.decls
        if not known:
            raise SpecError(where, f'attribute "targets": unknown target "{kind}.{name}"')
        return (f"{kind}.{name}",)

    # ---- whole-fleet checks

    @staticmethod
    def check_references(images: Mapping[str, ImageDef]) -> None:
        """Every block reference names an image; ``from``/``copy.from`` make no cycle."""
        edges: dict[str, list[tuple[str, Location | None]]] = {}
        for image_id, image in images.items():
            out = edges.setdefault(image_id, [])
            if image.base.kind == "block":
                out.append((image.base.ref, image.base.loc))
            for step in image.steps:
                if isinstance(step, Copy) and step.from_image is not None:
                    out.append((step.from_image, step.loc))
            for target, loc in out:
                if target not in images:
                    raise SpecError(
                        loc,
                        f'unknown reference "{target}"',
                        block=label_of(image_id),
                        hint=did_you_mean(target, sorted(images)),
                    )
        done: set[str] = set()

        def visit(node: str, path: list[str]) -> None:
            if node in done:
                return
            if node in path:
                cycle = [*path[path.index(node) :], node]
                loc = next(loc for t, loc in edges[cycle[0]] if t == cycle[1])
                raise SpecError(
                    loc, "reference cycle: " + " -> ".join(cycle), block=label_of(cycle[0])
                )
            path.append(node)
            for target, _ in edges[node]:
                visit(target, path)
            path.pop()
            done.add(node)

        for image_id in sorted(edges):
            visit(image_id, [])


def load_fleet(
    specs_dir: Path,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    parse_cache: ParseCache | None = None,
    factoring: bool = True,
) -> Fleet:
    """Load every ``*.hcl`` file directly in ``specs_dir`` (sorted by name) as one fleet.

    Variables take ``overrides`` (``--set``) first, then ``environ[NAME]``, then their
    default; ``environ=None`` reads no environment at all. Relative paths resolve
    against the directory of the file that wrote them; locations show files as
    ``str(specs_dir / name)``. Raises SpecError (exit status 2) on any bad input.
    ``parse_cache`` (optional, owned by the caller) skips re-parsing unchanged files.
    ``factoring``: order apps' apt sets by popularity (``spec.lower.order_apt``).
    Files that hold bake ``target``/``function`` blocks are read as a bake project
    (:func:`pipeline.spec.bakeproject.load_bake_specs`).
    """
    paths = sorted(p for p in specs_dir.glob("*.hcl") if p.is_file())
    if not paths:
        raise SpecError(Location(str(specs_dir)), "no *.hcl spec files in this directory")
    files = [parse_file(p, str(specs_dir / p.name), parse_cache) for p in paths]
    from pipeline.spec.bakeproject import is_bake, load_bake_specs

    if is_bake(files):  # target blocks: read with bake's rules (see spec.bakeproject)
        return load_bake_specs(files, dict(overrides or {}), dict(environ or {}))
    loader = Loader(files, dict(overrides or {}), dict(environ or {}), factoring=factoring)
    return loader.load()
