"""The HCL parser side of ``pipeline.hcl``: python-hcl2's lark tree -> located ``Expr``
values. The only module that imports ``hcl2`` and ``lark``; ``pipeline.hcl.files`` loads it on
first parse, so commands served from the parse cache never pay for the import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import hcl2
from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from pipeline.errors import Location, SpecError
from pipeline.hcl import guard
from pipeline.hcl.numbers import parse_decimal
from pipeline.hcl.strings import (
    Directive,
    Flat,
    Strips,
    blank_block_comments,
    mark_strips,
    nest,
    quote_heredoc,
    unclosed_brace,
    unescape,
)
from pipeline.hcl.values import (
    PLACEHOLDER,
    Attribute,
    Binary,
    Block,
    Call,
    Conditional,
    Expr,
    File,
    ForExpr,
    GetAttr,
    Index,
    Literal,
    ObjectExpr,
    Splat,
    Template,
    TupleExpr,
    Unary,
    Variable,
)
from pipeline.limits import Limits, current, over


def parse(text: str, path: str, limits: Limits | None = None) -> File:
    """Parse HCL text. ``path`` is what locations show. Raises SpecError on bad syntax,
    on a duplicate attribute in one body, on interpolation in a block label, and on
    text over a limit (``limits``, default :func:`pipeline.limits.current`; see
    :mod:`pipeline.hcl.guard`): size, string length, nesting depth, block count."""
    limits = limits or current()
    guard.check_text(text, path, limits)
    text, strips = mark_strips(blank_block_comments(text))
    tree = _parse_tree(text, path, _NO_SHIFT)
    _check_tree(tree, path, limits)
    conv = _Converter(path, _NO_SHIFT, strips)
    body = next(c for c in tree.children if isinstance(c, Tree) and c.data == "body")
    return File(path, conv.body(body, None))


def parse_expression(text: str, path: str = "<expr>") -> Expr:
    """Parse one expression (``1 + var.x``); for tests and command-line values."""
    shift = _Shift(col_first=-4)
    limits = current()
    guard.check_text(text, path, limits)
    text, strips = mark_strips(blank_block_comments(text))
    tree = _parse_tree(f"_ = {text}", path, shift)
    _check_tree(tree, path, limits)
    conv = _Converter(path, shift, strips)
    body = next(c for c in tree.children if isinstance(c, Tree) and c.data == "body")
    attr = next(c for c in body.children if isinstance(c, Tree) and c.data == "attribute")
    return conv.expr(attr.children[-1])


def parse_template(text: str, loc: Location) -> Template:
    """``text`` (already unescaped, e.g. a JSON string) as a standalone template;
    positions inside it are shown from ``loc`` on (exact for one-line text)."""
    if not text:
        return Template(loc, ("",))
    text, marked = mark_strips(text)
    strips = {
        (line + loc.line - 1, col + loc.col if line == 1 else col): flags
        for (line, col), flags in marked.items()
    }
    quoted, inserted = quote_heredoc(text, 6)
    shift = _Shift(loc.line - 1, loc.col - 5, 0, inserted)
    conv = _Converter(loc.file, shift, strips)
    tree = _parse_tree('_ = "' + quoted + '"', loc.file, shift)
    attr = _trees(_trees(tree)[0])[0]
    template = conv.expr(attr.children[-1])
    assert isinstance(template, Template)
    return Template(loc, template.parts)


@dataclass(frozen=True)
class _Shift:
    """Maps a position in re-parsed text (an expression, a heredoc body turned into a
    quoted string) back to the file: lines move by ``line_base``, columns by
    ``col_first`` on line 1 and ``col_rest`` after, minus the escape characters that
    were ``inserted`` (line -> columns) before the position."""

    line_base: int = 0
    col_first: int = 0
    col_rest: int = 0
    inserted: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    def map(self, line: int, col: int) -> tuple[int, int]:
        extra = sum(1 for c in self.inserted.get(line, ()) if c < col)
        shift = self.col_first if line == 1 else self.col_rest
        return line + self.line_base, max(1, col - extra + shift)


_NO_SHIFT = _Shift()


def _parse_tree(text: str, path: str, shift: _Shift) -> Tree[Token]:
    try:
        return hcl2.parses_to_tree(text)
    except UnexpectedInput as exc:
        line = getattr(exc, "line", -1)
        col = getattr(exc, "column", -1)
        if line is None or line < 1:
            line = text.count("\n") + 1
            col = len(text.rsplit("\n", 1)[-1]) + 1
        loc = Location(path, *shift.map(line, col))
        message = _syntax_message(exc)
        if "in an unterminated string" in message:
            line, col = _line_end(text, line, col)
            loc = Location(path, *shift.map(line, col))
            raise SpecError(loc, "syntax error: unterminated string") from None
        if message.startswith("unexpected end of file"):
            opened = unclosed_brace(text)
            if opened is not None:
                at = Location(path, *shift.map(*opened))
                raise SpecError(at, 'syntax error: this "{" is never closed') from None
        raise SpecError(loc, "syntax error: " + message) from None


def _line_end(text: str, line: int, col: int) -> tuple[int, int]:
    """The position of the end of ``line`` (its newline, or the end of the text)."""
    lines = text.split("\n")
    if 1 <= line <= len(lines):
        return line, len(lines[line - 1]) + 1
    return line, col


def _check_tree(tree: Tree[Token], path: str, limits: Limits) -> None:
    """Refuse a syntax tree deeper than ``Limits.spec_depth`` or with more blocks than
    ``Limits.spec_blocks`` (located at the first node over the limit). Iterative: the
    converter and evaluator recurse, so depth is bounded before they run."""
    stack: list[tuple[Tree[Token], int]] = [(tree, 1)]
    blocks = 0
    while stack:
        node, depth = stack.pop()
        if depth > limits.spec_depth:
            raise SpecError(
                _tree_loc(node, path),
                "nested too deeply (blocks, brackets and operators); "
                + over("spec_depth", limits.spec_depth, "levels"),
            )
        if node.data == "block":
            blocks += 1
            if blocks > limits.spec_blocks:
                raise SpecError(
                    _tree_loc(node, path),
                    f"more than {limits.spec_blocks:,} blocks in one file; "
                    + over("spec_blocks", limits.spec_blocks, "blocks"),
                )
        kids = [c for c in node.children if isinstance(c, Tree)]
        stack.extend((c, depth + 1) for c in reversed(kids))  # source order


def _tree_loc(node: Tree[Token], path: str) -> Location:
    if not node.meta.empty:
        return Location(path, node.meta.line, node.meta.column)
    return Location(path)


_CLOSERS = {"EQ": '"="', "COMMA": '","', "RBRACE": '"}"', "RSQB": '"]"', "RPAR": '")"'}


def _syntax_message(exc: UnexpectedInput) -> str:
    if isinstance(exc, UnexpectedCharacters):
        return f"unexpected character {json.dumps(exc.char)}"
    if isinstance(exc, UnexpectedEOF):
        return "unexpected end of file"
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            what = "end of file"
        else:
            text = str(token.value).strip()
            first = text.split("\n", 1)[0].strip() if text else ""
            if not first:
                what = "newline" if "\n" in str(token.value) else "end of input"
            else:
                shown = first if len(first) <= 20 else first[:20] + "..."
                what = f"'{shown}'" if '"' in shown else f'"{shown}"'
        expected = exc.expected or set()
        if what.startswith(('"<<', "'<<")):
            return f"unterminated heredoc {what}: no line holds only its closing marker"
        if "STRING_CHARS" in expected:
            return f"unexpected {what} in an unterminated string"
        if "INT_LITERAL" in expected:
            wanted = ["an expression"]
        elif "NL_OR_COMMENT" in expected and expected & {"$END", "RBRACE"}:
            wanted = ["a newline"]
        else:
            wanted = []
        wanted += [_CLOSERS[t] for t in _CLOSERS if t in expected]
        if wanted[:1] == ["a newline"] and _CLOSERS["RBRACE"] in wanted:
            wanted.remove(_CLOSERS["RBRACE"])  # "}" is only right inside a block
        if "COMMA" in expected and not expected & {"RSQB", "RPAR"}:
            wanted.remove(_CLOSERS["COMMA"])
        tail = f", expected {' or '.join(wanted[:3])}" if wanted else ""
        return f"unexpected {what}{tail}"
    return str(exc).split("\n", 1)[0]


def _trees(node: Tree[Token]) -> list[Tree[Token]]:
    return [c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]


def _tokens(node: Tree[Token]) -> list[Token]:
    return [c for c in node.children if isinstance(c, Token)]


def _first_token(node: Tree[Token] | Token) -> Token | None:
    if isinstance(node, Token):
        return node
    for child in node.children:
        found = _first_token(child)
        if found is not None:
            return found
    return None


def _name_of(node: Tree[Token]) -> str:
    """The text of an identifier / keyword / literal_value tree."""
    token = _first_token(node)
    assert token is not None
    return str(token.value)


class _Converter:
    """Lark tree -> Expr/Block; ``shift`` maps positions of re-parsed text."""

    def __init__(self, path: str, shift: _Shift, strips: Strips | None = None) -> None:
        self.path = path
        self.shift = shift
        self.strips = strips or {}

    def loc(self, node: Tree[Token] | Token) -> Location:
        if isinstance(node, Token):
            line, col = node.line or 0, node.column or 0
        elif not node.meta.empty:
            line, col = node.meta.line, node.meta.column
        else:
            token = _first_token(node)
            line, col = (token.line or 0, token.column or 0) if token else (0, 0)
        if not line:
            return Location(self.path)
        return Location(self.path, *self.shift.map(line, col))

    # ---- structure

    def body(self, node: Tree[Token], owner: str | None) -> tuple[Attribute | Block, ...]:
        items: list[Attribute | Block] = []
        seen: dict[str, Attribute] = {}
        for child in _trees(node):
            if child.data == "attribute":
                attr = self.attribute(child)
                if attr.name in seen:
                    raise SpecError(
                        attr.loc,
                        f'attribute "{attr.name}" is already set at {seen[attr.name].loc}',
                        block=owner,
                    )
                seen[attr.name] = attr
                items.append(attr)
            elif child.data == "block":
                items.append(self.block(child))
        return tuple(items)

    def attribute(self, node: Tree[Token]) -> Attribute:
        name_node = node.children[0]
        assert isinstance(name_node, Tree)
        return Attribute(_name_of(name_node), self.expr(node.children[-1]), self.loc(name_node))

    def block(self, node: Tree[Token]) -> Block:
        parts = _trees(node)
        type_node, body = parts[0], parts[-1]
        labels: list[str] = []
        for label in parts[1:-1]:
            if label.data == "string":
                template = self.template(label)
                if not all(isinstance(p, str) for p in template.parts):
                    raise SpecError(
                        self.loc(label), "a block label must be a plain string, not a template"
                    )
                labels.append("".join(p for p in template.parts if isinstance(p, str)))
            else:
                labels.append(_name_of(label))
        block_type = _name_of(type_node)
        owner = " ".join([block_type, *(f'"{x}"' for x in labels)])
        return Block(block_type, tuple(labels), self.body(body, owner), self.loc(type_node))

    # ---- expressions

    def expr(self, node: Tree[Token] | Token) -> Expr:
        if isinstance(node, Token):  # pragma: no cover - the grammar wraps tokens
            raise SpecError(self.loc(node), f"unexpected token {node.value!r}")
        handler = getattr(self, "x_" + node.data, None)
        if handler is None:
            raise SpecError(self.loc(node), f"unsupported expression ({node.data})")
        result: Expr = handler(node)
        return result

    def x_expr_term(self, node: Tree[Token]) -> Expr:
        inner = _trees(node)
        if not inner:  # pragma: no cover - the grammar forbids it
            raise SpecError(self.loc(node), "empty expression")
        return self.expr(inner[0])

    def x_int_lit(self, node: Tree[Token]) -> Expr:
        return Literal(self.loc(node), int(_name_of(node)))

    def x_float_lit(self, node: Tree[Token]) -> Expr:
        value = parse_decimal(_name_of(node))
        if value is None:  # pragma: no cover - the grammar only lexes decimals
            raise SpecError(self.loc(node), f"invalid number {_name_of(node)}")
        return Literal(self.loc(node), value)

    def x_literal_value(self, node: Tree[Token]) -> Expr:
        text = _name_of(node)
        return Literal(self.loc(node), {"true": True, "false": False, "null": None}[text])

    def x_identifier(self, node: Tree[Token]) -> Expr:
        return Variable(self.loc(node), _name_of(node))

    def x_keyword(self, node: Tree[Token]) -> Expr:
        return Variable(self.loc(node), _name_of(node))

    def x_string(self, node: Tree[Token]) -> Expr:
        return self.template(node)

    def x_template_string(self, node: Tree[Token]) -> Expr:
        raw = _name_of(node)
        return Template(self.loc(node), (unescape(raw[2:-2], self.loc(node)),))

    def x_tuple(self, node: Tree[Token]) -> Expr:
        return TupleExpr(self.loc(node), tuple(self.expr(c) for c in _trees(node)))

    def x_object(self, node: Tree[Token]) -> Expr:
        items = []
        for elem in _trees(node):
            key_node, value_node = _trees(elem)
            items.append((self.object_key(key_node), self.expr(value_node)))
        return ObjectExpr(self.loc(node), tuple(items))

    def object_key(self, node: Tree[Token]) -> Expr:
        inner = _trees(node)[0]
        if inner.data == "keyword":
            return Literal(self.loc(inner), _name_of(inner))
        if inner.data == "expr_term":
            has_paren = any(isinstance(c, Token) and c.type == "LPAR" for c in inner.children)
            term = _trees(inner)[0]
            if not has_paren and term.data in ("identifier", "literal_value"):
                return Literal(self.loc(term), _name_of(term))
        return self.expr(inner)

    def x_unary_op(self, node: Tree[Token]) -> Expr:
        op = str(node.children[0]).strip()
        return Unary(self.loc(node), op, self.expr(_trees(node)[0]))

    def x_binary_op(self, node: Tree[Token]) -> Expr:
        left, term = _trees(node)[:2]
        op_node, right = _trees(term)[:2]
        op = str(_first_token(op_node)).split()[-1]
        return Binary(self.loc(node), op, self.expr(left), self.expr(right))

    def x_conditional(self, node: Tree[Token]) -> Expr:
        cond, then, otherwise = _trees(node)
        return Conditional(self.loc(node), self.expr(cond), self.expr(then), self.expr(otherwise))

    def x_function_call(self, node: Tree[Token]) -> Expr:
        names = [c for c in _trees(node) if c.data == "identifier"]
        if len(names) > 1:
            text = "::".join(_name_of(n) for n in names)
            raise SpecError(self.loc(node), f'unknown function "{text}"')
        args_node = next((c for c in _trees(node) if c.data == "arguments"), None)
        args: tuple[Expr, ...] = ()
        expand = False
        if args_node is not None:
            args = tuple(self.expr(c) for c in _trees(args_node))
            expand = any(t.type == "ELLIPSIS" for t in _tokens(args_node))
        return Call(self.loc(node), _name_of(names[0]), args, expand)

    def x_get_attr_expr_term(self, node: Tree[Token]) -> Expr:
        target, get_attr = _trees(node)
        return self.get_attr(self.expr(target), get_attr, self.loc(node))

    def get_attr(self, target: Expr, node: Tree[Token], loc: Location) -> GetAttr:
        name_node = _trees(node)[0]
        # errors about the attribute point at its ".", as HCL's traversal ranges do
        return GetAttr(loc, target, _name_of(name_node), self.loc(node))

    def index(self, target: Expr, node: Tree[Token], loc: Location) -> Index:
        if node.data == "short_index":
            token = next(t for t in _tokens(node) if t.type == "INT_LITERAL")
            return Index(loc, target, Literal(self.loc(token), int(token.value)))
        return Index(loc, target, self.expr(_trees(node)[0]))

    def x_index_expr_term(self, node: Tree[Token]) -> Expr:
        target, index = _trees(node)
        return self.index(self.expr(target), index, self.loc(node))

    def _splat(self, node: Tree[Token]) -> Expr:
        target, splat = _trees(node)
        loc = self.loc(node)
        ops: list[GetAttr | Index] = []
        current: Expr = Variable(loc, PLACEHOLDER)
        steps = _trees(splat)
        attr_only = splat.data == "attr_splat"
        # x.*.a[0] is [for v in x: v.a][0]: in an attribute-only splat an index
        # ends the splat and applies to its result
        cut = next(
            (i for i, op in enumerate(steps) if attr_only and op.data != "get_attr"), len(steps)
        )
        for op in steps[:cut]:
            step = (
                self.get_attr(current, op, loc)
                if op.data == "get_attr"
                else self.index(current, op, loc)
            )
            ops.append(step)
            current = step
        result: Expr = Splat(loc, self.expr(target), tuple(ops))
        for op in steps[cut:]:
            result = (
                self.get_attr(result, op, loc)
                if op.data == "get_attr"
                else self.index(result, op, loc)
            )
        return result

    x_attr_splat_expr_term = _splat
    x_full_splat_expr_term = _splat

    def _for_intro(self, node: Tree[Token]) -> tuple[str | None, str, Expr]:
        names = [_name_of(c) for c in _trees(node) if c.data == "identifier"]
        collection = next(c for c in _trees(node) if c.data != "identifier")
        if len(names) == 2:
            return names[0], names[1], self.expr(collection)
        return None, names[0], self.expr(collection)

    def _for_cond(self, node: Tree[Token]) -> Expr | None:
        cond = next((c for c in _trees(node) if c.data == "for_cond"), None)
        return self.expr(_trees(cond)[0]) if cond is not None else None

    def x_for_tuple_expr(self, node: Tree[Token]) -> Expr:
        intro, value = _trees(node)[:2]
        key_var, value_var, coll = self._for_intro(intro)
        return ForExpr(
            self.loc(node), key_var, value_var, coll, None, self.expr(value), self._for_cond(node)
        )

    def x_for_object_expr(self, node: Tree[Token]) -> Expr:
        intro, key, value = _trees(node)[:3]
        key_var, value_var, coll = self._for_intro(intro)
        group = any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in node.children)
        return ForExpr(
            self.loc(node),
            key_var,
            value_var,
            coll,
            self.expr(key),
            self.expr(value),
            self._for_cond(node),
            group,
        )

    def x_heredoc_template(self, node: Tree[Token]) -> Expr:
        return self.heredoc(node, trim=False)

    def x_heredoc_template_trim(self, node: Tree[Token]) -> Expr:
        return self.heredoc(node, trim=True)

    # ---- templates

    def template(self, node: Tree[Token]) -> Template:
        flat: list[Flat] = []
        for part in node.children:
            if not (isinstance(part, Tree) and part.data == "string_part"):
                continue
            inner = part.children[0]
            if isinstance(inner, Token):
                text = str(inner.value)
                if inner.type in ("ESCAPED_INTERPOLATION", "ESCAPED_DIRECTIVE"):
                    text = text[1:]  # $${ -> ${, %%{ -> %{
                flat.append(unescape(text, self.loc(inner)))
            else:
                flat.append(self.directive(inner))
        return Template(self.loc(node), nest(flat, self.loc(node)))

    def directive(self, node: Tree[Token]) -> Flat:
        loc = self.loc(node)
        if node.data == "interpolation":
            expr = self.expr(_trees(node)[0])
            left, right = self.strips.get((loc.line, loc.col), (False, False))
            if left or right:
                return Directive("interp", loc, left, right, expr, [])
            return expr
        tokens = [c for c in node.children if isinstance(c, Token)]
        strip_left = len(tokens) > 1 and tokens[1].type == "STRIP_MARKER"
        strip_right = len(tokens) > 1 and tokens[-2].type == "STRIP_MARKER"
        kind = node.data.removeprefix("template_").removesuffix("_start")
        exprs = [c for c in _trees(node) if c.data != "identifier"]
        names = [_name_of(c) for c in _trees(node) if c.data == "identifier"]
        return Directive(
            kind, loc, strip_left, strip_right, self.expr(exprs[0]) if exprs else None, names
        )

    def heredoc(self, node: Tree[Token], trim: bool) -> Expr:
        token = node.children[0]
        assert isinstance(token, Token)
        raw = str(token.value)
        first_nl = raw.index("\n")
        marker = raw[(3 if trim else 2) : first_nl].rstrip("\r")
        rest = raw[first_nl + 1 :].rstrip("\n").rstrip("\r")
        body = rest[: len(rest) - len(marker)].rstrip(" \t")
        indent = 0
        if trim:
            lines = body.split("\n")
            widths = [len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()]  # Unicode spaces
            indent = min(widths, default=0)
            body = "\n".join(ln[indent:] for ln in lines)
        loc = self.loc(token)
        if not body:
            return Template(loc, ("",))
        # Re-parse the body as a quoted string. Its line 1 is the line after the
        # marker and starts with `_ = "` (5 columns); trimmed indentation comes back.
        quoted, inserted = quote_heredoc(body, 6)
        shift = _Shift(loc.line, -5 + indent, indent, inserted)
        sub = _Converter(self.path, shift, self.strips)
        tree = _parse_tree('_ = "' + quoted + '"', self.path, shift)
        attr = _trees(_trees(tree)[0])[0]
        template = sub.expr(attr.children[-1])
        assert isinstance(template, Template)
        return Template(loc, template.parts)
