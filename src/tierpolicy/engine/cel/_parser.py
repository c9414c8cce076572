"""The CEL parser: tokens to an abstract syntax tree, macros expanded.

Recursive descent over CEL's grammar, lowest precedence first::

    expr        = or ["?" or ":" expr]
    or          = and {"||" and}
    and         = relation {"&&" relation}
    relation    = addition {("<" | "<=" | ">" | ">=" | "==" | "!=" | "in") addition}
    addition    = multiply {("+" | "-") multiply}
    multiply    = unary {("*" | "/" | "%") unary}
    unary       = member | "!" {"!"} member | "-" {"-"} member
    member      = primary {"." NAME ["(" args ")"] | "[" expr "]"}
    primary     = NAME ["(" args ")"] | "(" expr ")" | "[" [args] [","] "]"
                | "{" [entries] [","] "}" | LITERAL

A minus sign directly on a number is the literal's sign when it is the only one, which
is how ``-9223372036854775808`` (whose magnitude alone overflows) is written. After two
or more, every one is an operator, as in the reference parsers (cel-go, cel-cpp):
``--9223372036854775808`` negates the out-of-range literal ``9223372036854775808``.

Syntax outside the supported subset (message construction ``Foo{...}``, names with a
leading dot, optional syntax ``?.`` and ``[?``, unknown functions) is rejected here with
``reason="unsupported"``, naming the construct. Other languages' words for operators
(``a and b``, ``not a``, ``x is null``, ``x not in xs``) are syntax errors on the word,
with a hint giving the CEL spelling. Hostile input is bounded: expressions
longer than :data:`MAX_EXPRESSION_LENGTH` characters or nesting deeper than
:data:`MAX_NESTING` are rejected with a clear error instead of exhausting the stack.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import TYPE_CHECKING, Final

from tierpolicy.engine._exceptions import ExpressionSyntaxError

from . import _ast as ast
from ._hints import FOREIGN_LITERALS, cel_writes, logic_word
from ._lexer import RESERVED, Token, tokenize
from ._types import BOOL, BYTES, DOUBLE, INT, NULL_TYPE, STRING, UINT
from ._values import INT64_MAX, INT64_MIN, TIMESTAMP_PARTS

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._types import CelType

MAX_EXPRESSION_LENGTH: Final = 4096
"""Longest expression accepted, in characters."""
MAX_NESTING: Final = 64
"""Deepest nesting of sub-expressions accepted."""

GLOBAL_FUNCTIONS: Final = frozenset(
    {
        "size",
        "int",
        "uint",
        "double",
        "string",
        "bool",
        "bytes",
        "timestamp",
        "duration",
        "dyn",
        "matches",
    }
)
"""Functions callable as ``f(x)``."""
METHODS: Final = frozenset({"size", "startsWith", "endsWith", "contains", "matches", *TIMESTAMP_PARTS})
"""Functions callable as ``x.f()``."""
MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})
"""Comprehension macros callable as ``list.m(x, ...)``."""

_RELATIONS: Final = frozenset({"<", "<=", ">", ">=", "==", "!=", "in"})
# Tokens that start an operand: after the word `not` they show it was meant as "!"
# (`not(x)` would be a call, but CEL has no function of that name either).
_OPERAND_STARTS: Final = frozenset(
    {"ident", "int", "uint", "double", "string", "bytes", "bool", "null", "!", "("}
)
_LITERAL_TYPES: Final[dict[str, CelType]] = {
    "int": INT,
    "uint": UINT,
    "double": DOUBLE,
    "string": STRING,
    "bytes": BYTES,
    "bool": BOOL,
    "null": NULL_TYPE,
}


def parse(source: str) -> ast.Node:
    """Parse a CEL expression.

    Raises:
        ExpressionSyntaxError: With ``reason="syntax"`` for malformed text, or
            ``reason="unsupported"`` for valid CEL outside the supported subset.
    """
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionSyntaxError(
            f"expression is too long ({len(source)} characters; the limit is {MAX_EXPRESSION_LENGTH})",
            source=source,
            offset=MAX_EXPRESSION_LENGTH,
            length=len(source) - MAX_EXPRESSION_LENGTH,
        )
    node = _Parser(source).parse()
    _check_depth(source, node)
    return node


def _check_depth(source: str, root: ast.Node) -> None:
    """Reject trees deeper than MAX_NESTING (long ``a.b.c...`` or ``1+1+...`` chains).

    Iterative, so that it cannot itself run out of stack.
    """
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise ExpressionSyntaxError(
                f"expression nests too deeply (more than {MAX_NESTING} levels)",
                source=source,
                offset=node.start,
                length=node.end - node.start,
            )
        stack.extend((child, depth + 1) for child in ast.children(node))


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.pos = 0
        self.nesting = 0

    # ------------------------------------------------------------------ helpers

    def error(
        self,
        message: str,
        token: Token,
        *,
        reason: str = "syntax",
        hint: str | None = None,
        end: int | None = None,
    ) -> ExpressionSyntaxError:
        stop = token.end if end is None else end
        return ExpressionSyntaxError(
            message,
            source=self.source,
            offset=token.start,
            length=max(1, stop - token.start),
            hint=hint,
            reason=reason,
        )

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind != "eof":
            self.pos += 1
        return token

    def accept(self, kind: str) -> Token | None:
        if self.peek().kind == kind:
            return self.advance()
        return None

    def expect(self, kind: str, what: str) -> Token:
        token = self.peek()
        if token.kind != kind:
            raise self.foreign_word() or self.error(f"expected {what}, found {_describe(token)}", token)
        return self.advance()

    def foreign_word(self) -> ExpressionSyntaxError | None:
        """The error for another language's operator word right after an operand, if it is one.

        ``a and b``, ``a or b``, ``x is null``, ``x is not null``, ``x not in xs`` (in
        any case): the error spans the words and its hint gives the CEL spelling.
        """
        token = self.peek()
        if token.kind != "ident":
            return None
        word = str(token.value).lower()
        following = self.peek(1)
        last = token
        if word == "not" and following.kind == "in":
            last, foreign, cel = following, "a not in b", "!(a in b)"
        elif word == "is":
            negated = following.kind == "ident" and str(following.value).lower() == "not"
            last = following if negated else token
            after = self.peek(2 if negated else 1)
            nullish = after.kind == "null" or FOREIGN_LITERALS.get(after.text) == "null"
            if nullish:
                last = after
            foreign = self.source[token.start : last.end]
            cel = ("!=" if negated else "==") + (" null" if nullish else "")
        elif (operator := logic_word(word)) is not None:
            foreign, cel = token.text, operator
        else:
            return None
        words = self.source[token.start : last.end]
        return self.error(
            f"{words!r} is not a CEL operator", token, hint=cel_writes(foreign, cel), end=last.end
        )

    # ------------------------------------------------------------------ grammar

    def parse(self) -> ast.Node:
        node = self.expr()
        token = self.peek()
        if token.kind != "eof":
            foreign = self.foreign_word()
            if foreign is not None:
                raise foreign
            hint = "did you mean '=='?" if token.kind == "ident" else None
            raise self.error(f"unexpected {_describe(token)} after the expression", token, hint=hint)
        return node

    def expr(self) -> ast.Node:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self.error(f"expression nests too deeply (more than {MAX_NESTING} levels)", self.peek())
        cond = self.logical(ast.Or, "||", self.conjunction)
        question = self.accept("?")
        if question is not None:
            then = self.logical(ast.Or, "||", self.conjunction)
            self.expect(":", "':' of the conditional")
            otherwise = self.expr()
            cond = ast.Conditional(
                start=cond.start,
                end=otherwise.end,
                cond=cond,
                then=then,
                otherwise=otherwise,
                op_start=question.start,
            )
        self.nesting -= 1
        return cond

    def conjunction(self) -> ast.Node:
        return self.logical(ast.And, "&&", self.relation)

    def logical(self, cls: type[ast.And | ast.Or], op: str, operand: Callable[[], ast.Node]) -> ast.Node:
        first = operand()
        if self.peek().kind != op:
            return first
        children = [first]
        while self.accept(op) is not None:
            children.append(operand())
        flat: list[ast.Node] = []
        for child in children:
            # (a && b) && c is a && b && c: CEL's && and || are commutative.
            flat.extend(child.children if isinstance(child, cls) else (child,))
        return cls(start=first.start, end=children[-1].end, children=tuple(flat))

    def relation(self) -> ast.Node:
        left = self.addition()
        while self.peek().kind in _RELATIONS:
            op = self.advance()
            right = self.addition()
            left = ast.Binary(
                start=left.start,
                end=right.end,
                op=op.kind,
                left=left,
                right=right,
                op_start=op.start,
            )
        return left

    def addition(self) -> ast.Node:
        left = self.multiplication()
        while self.peek().kind in ("+", "-"):
            op = self.advance()
            right = self.multiplication()
            left = ast.Binary(
                start=left.start,
                end=right.end,
                op=op.kind,
                left=left,
                right=right,
                op_start=op.start,
            )
        return left

    def multiplication(self) -> ast.Node:
        left = self.unary()
        while self.peek().kind in ("*", "/", "%"):
            op = self.advance()
            right = self.unary()
            left = ast.Binary(
                start=left.start,
                end=right.end,
                op=op.kind,
                left=left,
                right=right,
                op_start=op.start,
            )
        return left

    def unary(self) -> ast.Node:
        kind = self.peek().kind
        if kind not in ("!", "-"):
            return self.member()
        ops: list[Token] = []
        while self.peek().kind == kind:
            ops.append(self.advance())
        operand: ast.Node
        if kind == "-" and self.peek().kind in ("int", "double") and not self.continues(1):
            # A lone minus sign is the literal's sign; after two or more, all are operators
            # (see the module docstring).
            if len(ops) == 1:
                operand = self.number_literal(ops.pop())
            else:
                operand = self.number_literal(None, negated=True)
        else:
            operand = self.member()
        for op in reversed(ops):
            operand = ast.Unary(start=op.start, end=operand.end, op=kind, operand=operand)
        return operand

    def continues(self, ahead: int) -> bool:
        """Whether a member suffix (``.x``, ``[i]``) follows the token ``ahead``."""
        return self.peek(ahead).kind in (".", "[", "?.")

    def number_literal(self, minus: Token | None, *, negated: bool = False) -> ast.Literal:
        """A number literal, with ``minus`` as its sign; ``negated``: minus operators precede it."""
        token = self.advance()
        value = token.value
        assert isinstance(value, int | float)  # noqa: S101  the lexer's number tokens
        start = token.start if minus is None else minus.start
        if minus is not None:
            value = -value
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            hint = None
            if negated and value == -INT64_MIN:
                hint = f"only a single minus sign makes a negative literal, as in -{token.text}"
            raise self.error("int literal out of range", token, hint=hint)
        if isinstance(value, float) and math.isinf(value):
            raise self.error("double literal out of range", token)
        return ast.Literal(start=start, end=token.end, value=value, type=_LITERAL_TYPES[token.kind])

    def member(self) -> ast.Node:
        node = self.primary()
        while True:
            token = self.peek()
            if token.kind == ".":
                self.advance()
                node = self.selection(node)
            elif token.kind == "[":
                self.advance()
                if self.peek().kind == "?":
                    raise self.error("optional indexing '[?' is not supported", token, reason="unsupported")
                index = self.expr()
                close = self.expect("]", "']'")
                node = ast.Index(
                    start=node.start, end=close.end, operand=node, index=index, op_start=token.start
                )
            elif token.kind == "?.":
                raise self.error(
                    "optional field selection '?.' is not supported", token, reason="unsupported"
                )
            elif token.kind == "{" and ast.attribute_path(node) is not None:
                raise self.error("message construction is not supported", token, reason="unsupported")
            else:
                return node

    def selection(self, operand: ast.Node) -> ast.Node:
        name = self.peek()
        if name.kind == "quoted":
            self.advance()
            field = str(name.value)
            return ast.Select(
                start=operand.start, end=name.end, operand=operand, field=field, field_start=name.start
            )
        if name.kind != "ident":
            raise self.error(f"expected a field name after '.', found {_describe(name)}", name)
        self.advance()
        field = str(name.value)
        if self.peek().kind != "(":
            if field in RESERVED:
                raise self.error(f"{field!r} is a reserved word", name)
            return ast.Select(
                start=operand.start, end=name.end, operand=operand, field=field, field_start=name.start
            )
        self.advance()
        args = self.arguments(")")
        close = self.expect(")", "')'")
        if field in MACROS:
            return self.comprehension(operand, name, args, close)
        if field not in METHODS:
            raise self.unsupported_function(name, METHODS | MACROS, method=True)
        return ast.Call(
            start=operand.start, end=close.end, name=field, target=operand, args=args, name_start=name.start
        )

    def comprehension(
        self, target: ast.Node, name: Token, args: tuple[ast.Node, ...], close: Token
    ) -> ast.Node:
        macro = str(name.value)
        arity = (2, 3) if macro == "map" else (2,)
        if len(args) not in arity:
            expected = "2 or 3" if macro == "map" else "2"
            raise self.error(
                f"{macro}() takes {expected} arguments: an iteration variable and an expression",
                name,
                end=close.end,
            )
        var = args[0]
        if not isinstance(var, ast.Ident):
            raise ExpressionSyntaxError(
                f"the first argument of {macro}() must be a simple variable name",
                source=self.source,
                offset=var.start,
                length=var.end - var.start,
            )
        predicate: ast.Node | None = args[1]
        transform: ast.Node | None = None
        if macro == "map":
            transform = args[-1]
            predicate = args[1] if len(args) == 3 else None
        return ast.Comprehension(
            start=target.start,
            end=close.end,
            macro=macro,
            range=target,
            var=var.name,
            var_start=var.start,
            predicate=predicate,
            transform=transform,
            name_start=name.start,
        )

    def arguments(self, closing: str) -> tuple[ast.Node, ...]:
        args: list[ast.Node] = []
        if self.peek().kind == closing:
            return ()
        args.append(self.expr())
        while self.accept(",") is not None:
            args.append(self.expr())
        return tuple(args)

    def primary(self) -> ast.Node:
        token = self.peek()
        kind = token.kind
        if kind in ("int", "double"):
            return self.number_literal(None)
        if kind in _LITERAL_TYPES:
            self.advance()
            return ast.Literal(start=token.start, end=token.end, value=token.value, type=_LITERAL_TYPES[kind])
        if kind == "ident":
            return self.identifier()
        if kind == "(":
            self.advance()
            inner = self.expr()
            close = self.expect(")", "')'")
            # Keep the parentheses in the span so clause text and error spans include them.
            return _respan(inner, token.start, close.end)
        if kind == "[":
            return self.list_literal()
        if kind == "{":
            return self.map_literal()
        if kind == ".":
            raise self.error(
                "names with a leading '.' (fully qualified names) are not supported",
                token,
                reason="unsupported",
            )
        if kind == "quoted":
            raise self.error("back-quoted names are only allowed after '.'", token)
        raise self.error(f"expected an expression, found {_describe(token)}", token)

    def identifier(self) -> ast.Node:
        token = self.advance()
        name = str(token.value)
        if name in RESERVED:
            raise self.error(f"{name!r} is a reserved word", token)
        if name.lower() == "not" and self.peek().kind in _OPERAND_STARTS:
            # `not a`, `not (a || b)`: never valid CEL, whatever `not` would name.
            raise self.error(f"{name!r} is not a CEL operator", token, hint=cel_writes(name, "!"))
        if self.peek().kind == "{":
            raise self.error("message construction is not supported", self.peek(), reason="unsupported")
        if self.peek().kind != "(":
            return ast.Ident(start=token.start, end=token.end, name=name)
        self.advance()
        args = self.arguments(")")
        close = self.expect(")", "')'")
        if name == "has":
            return self.has_macro(token, args, close)
        if name not in GLOBAL_FUNCTIONS:
            raise self.unsupported_function(token, GLOBAL_FUNCTIONS | {"has"}, method=False)
        return ast.Call(
            start=token.start, end=close.end, name=name, target=None, args=args, name_start=token.start
        )

    def has_macro(self, name: Token, args: tuple[ast.Node, ...], close: Token) -> ast.Node:
        if len(args) != 1 or not isinstance(args[0], ast.Select):
            raise self.error(
                "has() takes one field selection, as in has(seller.verified)", name, end=close.end
            )
        select = args[0]
        return ast.Has(
            start=name.start,
            end=close.end,
            operand=select.operand,
            field=select.field,
            field_start=select.field_start,
        )

    def unsupported_function(
        self, name: Token, known: frozenset[str], *, method: bool
    ) -> ExpressionSyntaxError:
        text = str(name.value)
        hint: str | None
        if method and text in GLOBAL_FUNCTIONS:
            hint = f"call it as a function: {text}(x)"
        elif not method and text in METHODS:
            hint = f"call it as a method: x.{text}(...)"
        else:
            close = difflib.get_close_matches(text, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
        what = "method" if method else "function"
        return self.error(f"{what} {text!r} is not supported", name, reason="unsupported", hint=hint)

    def list_literal(self) -> ast.Node:
        open_token = self.advance()
        if self.peek().kind == "?":
            raise self.error(
                "optional list elements '[?' are not supported", open_token, reason="unsupported"
            )
        elements: list[ast.Node] = []
        while self.peek().kind != "]":
            elements.append(self.expr())
            if self.accept(",") is None:
                break
        close = self.expect("]", "',' or ']'")
        return ast.ListLit(start=open_token.start, end=close.end, elements=tuple(elements))

    def map_literal(self) -> ast.Node:
        open_token = self.advance()
        entries: list[tuple[ast.Node, ast.Node]] = []
        while self.peek().kind != "}":
            if self.peek().kind == "?":
                raise self.error(
                    "optional map entries '{?' are not supported", self.peek(), reason="unsupported"
                )
            key = self.expr()
            self.expect(":", "':' after the map key")
            entries.append((key, self.expr()))
            if self.accept(",") is None:
                break
        close = self.expect("}", "',' or '}'")
        return ast.MapLit(start=open_token.start, end=close.end, entries=tuple(entries))


def _respan(node: ast.Node, start: int, end: int) -> ast.Node:
    return dataclasses.replace(node, start=start, end=end)


def _describe(token: Token) -> str:
    if token.kind == "eof":
        return "end of expression"
    return repr(token.text)
