"""What compiling a policy set shares across document kinds.

The loader validates documents into :class:`ParsedDocument` values, then hands each
kind's documents to that kind's compiler with a :class:`CompileContext`: the place to
report positioned diagnostics and to compile conditions against the context schema.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ._diagnostics import Code, Diagnostic, Position, Severity
from ._exceptions import ExpressionError
from .cel import CelType, Program, compile_expression

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import BaseModel

    from ._documents import Metadata
    from ._yaml import YamlDocument

Path_ = tuple[str | int, ...]

EXPRESSION_CODES = {
    "syntax": Code.EXPRESSION_SYNTAX,
    "unsupported": Code.EXPRESSION_SYNTAX,
    "type": Code.EXPRESSION_TYPE,
    "unknown_attribute": Code.UNKNOWN_ATTRIBUTE,
    "regex": Code.INVALID_REGEX,
    "type_name": Code.INVALID_TYPE_NAME,
    "value": Code.INVALID_LITERAL,
}


class Collector:
    """Collects diagnostics, mapping relative file names to display names."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def add(
        self,
        position: Position,
        code: Code,
        message: str,
        hint: str | None = None,
        severity: Severity = "error",
    ) -> None:
        self.items.append(Diagnostic(position, severity, code, message, hint))

    @property
    def failed(self) -> bool:
        return any(d.is_error for d in self.items)


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedDocument:
    """A validated document, with what is needed to position problems inside it."""

    file: str
    doc: YamlDocument
    lines: tuple[str, ...]
    kind: str
    name: str
    metadata: Metadata
    spec: BaseModel


class CompileContext:
    """What a kind's compiler gets: the diagnostics collector, the context schema and helpers.

    Attributes:
        parsed: Every validated document of the set.
        out: Where diagnostics go.
        version: The policy version decisions report.
        environment: The CEL environment conditions are checked against.
    """

    def __init__(self, parsed: list[ParsedDocument], out: Collector, version: str) -> None:
        self.parsed = parsed
        self.out = out
        self.version = version
        self.environment: dict[str, CelType] = {}

    def source(self, item: ParsedDocument, path: Path_) -> str:
        # Rules are named by their key (the feature, limit or tier name), so point there.
        return str(item.doc.key_position_of(path))

    def expression(
        self, item: ParsedDocument, path: Path_, text: str, *, expected: CelType | None = None
    ) -> Program | None:
        """Compile a condition, reporting any problem positioned inside it."""
        return self.expression_in(item.doc, item.lines, path, text, expected=expected)

    def expression_in(
        self,
        doc: YamlDocument,
        lines: Sequence[str],
        path: Path_,
        text: str,
        *,
        expected: CelType | None = None,
    ) -> Program | None:
        """Like :meth:`expression`, for a document that did not validate as a whole."""
        try:
            if expected is None:
                return compile_expression(text, self.environment)
            return compile_expression(text, self.environment, expected=expected)
        except ExpressionError as exc:
            position = expression_position(doc.position_of(path), lines, exc.offset)
            code = EXPRESSION_CODES.get(exc.reason, Code.EXPRESSION_SYNTAX)
            self.out.add(position, code, f"in condition {text!r}: {exc.message}", hint=exc.hint)
            return None


def expression_position(scalar: Position, lines: Sequence[str], offset: int) -> Position:
    """Map an offset inside an expression to its line and column in the file.

    Single-line plain and quoted scalars map exactly; for literal block scalars (``|``)
    the offset is followed across lines; elsewhere the scalar's own position is used.
    """
    line_index = scalar.line - 1
    if not 0 <= line_index < len(lines):
        return scalar
    text = lines[line_index]
    start = scalar.column - 1
    opener = text[start : start + 1]
    if opener in {"'", '"'}:
        return dataclasses.replace(scalar, column=scalar.column + 1 + offset)
    if opener == "|":
        body = line_index + 1
        while body < len(lines) and not lines[body].strip():
            body += 1
        if body >= len(lines):
            return scalar
        indent = len(lines[body]) - len(lines[body].lstrip(" "))
        consumed = 0
        for k in range(body, len(lines)):
            length = max(0, len(lines[k]) - indent)
            if offset <= consumed + length:
                return Position(scalar.file, k + 1, indent + 1 + offset - consumed)
            consumed += length + 1
        return scalar
    if opener == ">":
        return scalar
    return dataclasses.replace(scalar, column=scalar.column + offset)
