"""``image`` blocks and the step blocks (``run``, ``copy``, ``mount``) they hold."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.errors import Location, SpecError, did_you_mean
from pipeline.fs.context import read_ignore
from pipeline.hcl.values import (
    Block,
    BlockRef,
    to_string,
)
from pipeline.model import (
    BaseRef,
    Copy,
    ImageDef,
    Meta,
    Mount,
    Run,
    Step,
    classify_ref,
)
from pipeline.spec.lower import normalise_port
from pipeline.spec.schema import (
    COPY_ATTRS,
    IMAGE_ATTRS,
    IMAGE_BLOCKS,
    META_ORDER,
    MOUNT_ATTRS,
    RUN_ATTRS,
    Decl,
    Val,
    abs_path,
    as_command,
    as_pairs,
    in_block,
)
from pipeline.spec.variables import LoaderBase


class BlockLoader(LoaderBase):
    """The loader's second stage: ``image`` blocks and their ``run``/``copy`` steps,
    bases, directories and metadata attributes."""

    def base(self, val: Val) -> BaseRef:
        """The ``from`` value as a BaseRef."""
        value = val.value
        if isinstance(value, BlockRef):
            return BaseRef("block", self.image_ref(value, val.loc, "from"), val.loc)
        assert isinstance(value, str)
        ref = classify_ref(value, val.loc)
        if ref.kind in ("oci-layout", "oci-archive"):
            return BaseRef(ref.kind, str(abs_path(val.dir, ref.ref)), val.loc)
        return ref

    def image_ref(self, ref: BlockRef, loc: Location, what: str) -> str:
        """The ImageDef id a block reference names, for ``from`` and ``copy.from``."""
        if ref.kind == "group":
            raise SpecError(loc, f"{what}: a group ({ref.id}) cannot be used as an image")
        if ref.kind == "app" and ref.name in self.matrix_apps:
            names = ", ".join(f"app.{n}" for n, _ in self.matrix_apps[ref.name])
            raise SpecError(
                loc, f"{what}: {ref.id} is a matrix block; name one of its apps: {names}"
            )
        return ref.id

    def ignore(self, directory: Path) -> tuple[str, ...]:
        if directory not in self.ignores:
            self.ignores[directory] = read_ignore(directory)
        return self.ignores[directory]

    def directory(self, val: Val, what: str, where: str = "") -> Path:
        """The existing directory ``val`` names. Errors name the block that wrote it
        (a parent's, for an inherited attribute); ``where`` prefixes nested blocks."""
        value = val.value
        assert isinstance(value, str)
        path = abs_path(val.dir, value)
        block = None if where else val.block
        if not path.exists():
            raise SpecError(val.loc, f"{where}{what} directory not found: {path}", block=block)
        if not path.is_dir():
            raise SpecError(val.loc, f"{where}{what} is not a directory: {path}", block=block)
        return path

    def meta_steps(self, vals: Mapping[str, Val]) -> list[Step]:
        steps: list[Step] = []
        for name in META_ORDER:
            if name not in vals:
                continue
            val = vals[name]
            if name in ("env", "labels"):
                if val.value:  # an empty map changes nothing
                    steps.append(Meta(name, as_pairs(val.value), val.loc))
            elif name == "expose":
                if val.value:
                    steps.append(Meta("expose", self.ports(val), val.loc))
            elif name == "entrypoint":
                steps.append(Meta("entrypoint", as_command(val.value), val.loc))
            elif name == "cmd":
                steps.append(Meta("cmd", as_command(val.value), val.loc))
            elif name == "workdir":
                steps.append(Meta("workdir", str(val.value), val.loc))
            else:
                steps.append(Meta("user", str(val.value), val.loc))
        return steps

    @staticmethod
    def ports(val: Val) -> tuple[str, ...]:
        out = []
        assert isinstance(val.value, tuple)
        for item in val.value:
            try:
                out.append(normalise_port(item))
            except ValueError:
                shown = to_string(item)
                raise SpecError(
                    val.loc,
                    f'attribute "expose": "{shown}" is not a port '
                    "(expected 1-65535, optionally with /tcp, /udp or /sctp)",
                    block=val.block,
                ) from None
        return tuple(out)

    # ---- images

    def image(self, decl: Decl) -> ImageDef:
        block = decl.block
        with in_block(decl.label):
            self.no_blocks(block, IMAGE_BLOCKS)
            vals = self.attrs(block, IMAGE_ATTRS, self.scope, decl.dir)
            base = self.base(self.required(vals, "from", block.loc))
            steps: list[Step] = []
            for nested in block.blocks:
                step = self.step(nested, decl)
                if step is not None:
                    steps.append(step)
            steps.extend(self.meta_steps(vals))
            tags = vals["tags"].value if "tags" in vals else ()
            assert isinstance(tags, tuple)
            return ImageDef(
                id=f"image.{decl.name}", base=base, steps=tuple(steps), tags=tags, loc=block.loc
            )

    def step(self, block: Block, decl: Decl) -> Step | None:
        where = f"{block.type}: "
        if block.labels:
            raise SpecError(block.loc, f"{where}this block takes no name")
        if block.type == "run":
            return self.run(block, decl, where)
        if block.type == "copy":
            return self.copy(block, decl, where)
        self.no_blocks(block, (), where)
        if block.type == "env":
            schema = {a.name: "string" for a in block.attributes}
            vals = self.attrs(block, schema, self.scope, decl.dir, where)
            if not vals:
                return None
            return Meta("env", as_pairs({k: v.value for k, v in vals.items()}), block.loc)
        key = "path" if block.type == "workdir" else "name"
        vals = self.attrs(block, {key: "string"}, self.scope, decl.dir, where)
        value = self.required(vals, key, block.loc, where).value
        assert isinstance(value, str)
        return Meta("workdir" if block.type == "workdir" else "user", value, block.loc)

    def run(self, block: Block, decl: Decl, where: str) -> Run:
        self.no_blocks(block, ("mount",), where)
        vals = self.attrs(block, RUN_ATTRS, self.scope, decl.dir, where)
        command = self.required(vals, "command", block.loc, where)
        if isinstance(command.value, tuple) and not command.value:
            raise SpecError(command.loc, f'{where}attribute "command": the list is empty')
        network = vals.get("network")
        if network is not None and network.value not in ("default", "none"):
            raise SpecError(
                network.loc,
                f'{where}attribute "network": expected "default" or "none", '
                f'found "{network.value}"',
            )
        mounts = tuple(self.mount(m, decl, where + "mount: ") for m in block.blocks)
        return Run(
            command=command.value,  # type: ignore[arg-type]
            network="none" if network is not None and network.value == "none" else "default",
            mounts=mounts,
            loc=block.loc,
        )

    def mount(self, block: Block, decl: Decl, where: str) -> Mount:
        self.no_blocks(block, (), where)
        vals = self.attrs(block, MOUNT_ATTRS, self.scope, decl.dir, where)
        kind = self.required(vals, "type", block.loc, where)
        if kind.value not in ("cache", "secret"):
            raise SpecError(
                kind.loc,
                f'{where}attribute "type": expected "cache" or "secret", found "{kind.value}"',
                hint=did_you_mean(str(kind.value), ("cache", "secret")),
            )
        target = self.required(vals, "target", block.loc, where)
        assert isinstance(target.value, str)
        if not target.value.startswith("/"):
            raise SpecError(
                target.loc,
                f'{where}attribute "target": expected an absolute path, found "{target.value}"',
            )
        mount_id = str(vals["id"].value) if "id" in vals else ""
        if kind.value == "cache":
            if "source" in vals:
                raise SpecError(
                    vals["source"].loc, f'{where}attribute "source" only applies to secret mounts'
                )
            return Mount("cache", target.value, mount_id or target.value)
        source = self.required(vals, "source", block.loc, where)
        assert isinstance(source.value, str)
        return Mount("secret", target.value, mount_id, str(abs_path(source.dir, source.value)))

    def copy(self, block: Block, decl: Decl, where: str) -> Copy:
        self.no_blocks(block, (), where)
        vals = self.attrs(block, COPY_ATTRS, self.scope, decl.dir, where)
        src = self.required(vals, "src", block.loc, where).value
        sources = (src,) if isinstance(src, str) else src
        assert isinstance(sources, tuple)
        if not sources:
            raise SpecError(vals["src"].loc, f'{where}attribute "src": the list is empty')
        dest = self.required(vals, "dest", block.loc, where).value
        assert isinstance(dest, str)
        chmod = vals.get("chmod")
        if chmod is not None:
            mode = str(chmod.value)
            if not (3 <= len(mode) <= 4 and set(mode) <= set("01234567")):
                raise SpecError(
                    chmod.loc,
                    f'{where}attribute "chmod": expected an octal mode like "0644", found "{mode}"',
                )
        from_image: str | None = None
        context = ""
        ignore: tuple[str, ...] = ()
        if "from" in vals:
            if "context" in vals:
                raise SpecError(
                    vals["context"].loc,
                    f'{where}attribute "context" cannot be used together with "from"',
                )
            ref = vals["from"]
            if isinstance(ref.value, BlockRef):
                from_image = self.image_ref(ref.value, ref.loc, where + "from")
            else:
                from_image = str(ref.value)
        else:
            path = (
                self.directory(vals["context"], "context", where) if "context" in vals else decl.dir
            )
            context = str(path)
            ignore = self.ignore(path)
        return Copy(
            sources=tuple(str(s) for s in sources),
            dest=dest,
            context=context,
            from_image=from_image,
            chown=str(vals["chown"].value) if "chown" in vals else None,
            chmod=str(chmod.value) if chmod is not None else None,
            ignore=ignore,
            loc=block.loc,
        )

    # ---- apps
