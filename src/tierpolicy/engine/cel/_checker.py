"""The CEL type checker: infers a type for every node against the context schema.

Types flow bottom-up. Statically known misuse (``metrics.rating + "x"``,
``seller.name > 3``) and unknown attributes are errors at load time; ``dyn`` values are
accepted anywhere and checked when the program runs. The checker also collects the
attribute paths the expression reads and compiles literal regular expressions, so the
compiler never sees an invalid pattern.

Deliberate leniencies compared with the reference checkers, all safe because the
runtime implements full CEL semantics: numbers of different kinds may be compared with
``==`` and ``in`` (CEL's heterogeneous numeric equality makes ``1 == 1.0`` true), and
anything may be compared with ``null``.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import TYPE_CHECKING, Final

from tierpolicy.engine._exceptions import ExpressionError, ExpressionSyntaxError, ExpressionTypeError

from . import _ast as ast
from ._hints import FOREIGN_LITERALS, cel_writes
from ._types import (
    BOOL,
    BYTES,
    DOUBLE,
    DURATION,
    DYN,
    INT,
    NULL_TYPE,
    STRING,
    TIMESTAMP,
    UINT,
    CelType,
    ListType,
    MapType,
    ObjectType,
)
from ._values import DURATION_PARTS, TIMESTAMP_PARTS, Regex, compile_regex, parse_timezone

if TYPE_CHECKING:
    from collections.abc import Mapping

_NUMERIC: Final = frozenset({INT, UINT, DOUBLE})
_ORDERED: Final = frozenset({INT, UINT, DOUBLE, STRING, BYTES, BOOL, TIMESTAMP, DURATION})
_KEY_TYPES: Final = frozenset({INT, UINT, BOOL, STRING, DYN})
_SAME_KIND_ARITHMETIC: Final[dict[str, frozenset[CelType]]] = {
    "+": frozenset({INT, UINT, DOUBLE, STRING, BYTES, DURATION}),
    "-": frozenset({INT, UINT, DOUBLE, DURATION}),
    "*": frozenset({INT, UINT, DOUBLE}),
    "/": frozenset({INT, UINT, DOUBLE}),
    "%": frozenset({INT, UINT}),
}
_MIXED_ARITHMETIC: Final[dict[tuple[str, CelType, CelType], CelType]] = {
    ("+", TIMESTAMP, DURATION): TIMESTAMP,
    ("+", DURATION, TIMESTAMP): TIMESTAMP,
    ("-", TIMESTAMP, TIMESTAMP): DURATION,
    ("-", TIMESTAMP, DURATION): TIMESTAMP,
}
_CONVERSIONS: Final[dict[str, tuple[CelType, frozenset[CelType]]]] = {
    "int": (INT, frozenset({INT, UINT, DOUBLE, STRING, TIMESTAMP})),
    "uint": (UINT, frozenset({INT, UINT, DOUBLE, STRING})),
    "double": (DOUBLE, frozenset({INT, UINT, DOUBLE, STRING})),
    "string": (
        STRING,
        frozenset({INT, UINT, DOUBLE, STRING, BYTES, BOOL, TIMESTAMP, DURATION}),
    ),
    "bool": (BOOL, frozenset({BOOL, STRING})),
    "bytes": (BYTES, frozenset({BYTES, STRING})),
    "timestamp": (TIMESTAMP, frozenset({STRING, TIMESTAMP, INT})),
    "duration": (DURATION, frozenset({STRING, DURATION})),
}
_STRING_METHODS: Final = frozenset({"startsWith", "endsWith", "contains", "matches"})
_TYPE_NAMES: Final = frozenset(
    {"bool", "int", "uint", "double", "string", "bytes", "list", "map", "null_type", "type", "dyn"}
)


@dataclasses.dataclass(slots=True)
class CheckResult:
    """What the checker learnt about an expression.

    Attributes:
        types: The type of every node, keyed by ``id(node)``.
        references: For nodes that read a context attribute path, the dotted path,
            keyed by ``id(node)``.
        regexes: Compiled literal ``matches`` patterns, keyed by ``id(call node)``.
        roots: Root variables whose identifiers refer to the context (not to an
            iteration variable), keyed by ``id(ident node)``.
    """

    types: dict[int, CelType] = dataclasses.field(default_factory=dict)
    references: dict[int, str] = dataclasses.field(default_factory=dict)
    regexes: dict[int, Regex] = dataclasses.field(default_factory=dict)
    roots: set[int] = dataclasses.field(default_factory=set)


def check(source: str, root: ast.Node, env: Mapping[str, CelType], expected: CelType) -> CheckResult:
    """Type-check a parsed expression.

    Args:
        source: The expression text, for error positions.
        root: The parsed expression.
        env: Root variable name to type.
        expected: The type the whole expression must have; ``DYN`` accepts any.

    Returns:
        The inferred types and the attribute paths read.

    Raises:
        ExpressionTypeError: On a type error or unknown attribute.
        ExpressionSyntaxError: On an invalid literal regex (``reason="regex"``) or a
            construct outside the subset found during checking (``reason="unsupported"``).
    """
    checker = _Checker(source, env)
    result_type = checker.visit(root, record=True)
    if not _assignable(expected, result_type):
        raise checker.error(
            f"expression must be {expected}, but it is {result_type}",
            root.start,
            root.end,
        )
    return checker.result


def _assignable(expected: CelType, actual: CelType) -> bool:
    return expected in (actual, DYN) or actual == DYN


def comparable(left: CelType, right: CelType) -> bool:
    """Whether ``==`` between values of these types can ever be meaningful."""
    if DYN in (left, right) or NULL_TYPE in (left, right):
        return True
    if left in _NUMERIC and right in _NUMERIC:
        return True
    if isinstance(left, ListType) and isinstance(right, ListType):
        return comparable(left.elem, right.elem)
    if isinstance(left, MapType) and isinstance(right, MapType):
        return comparable(left.key, right.key) and comparable(left.value, right.value)
    if isinstance(left, ObjectType | MapType) and isinstance(right, ObjectType | MapType):
        # Objects are maps at run time; two different object types never are equal,
        # but an object against a map literal may be.
        return not (isinstance(left, ObjectType) and isinstance(right, ObjectType)) or (left == right)
    return left == right


def _join(left: CelType, right: CelType) -> CelType | None:
    """The common type of two branches or elements, or ``None`` when there is none."""
    if left == right:
        return left
    if DYN in (left, right) or NULL_TYPE in (left, right):
        return DYN
    if isinstance(left, ListType) and isinstance(right, ListType):
        elem = _join(left.elem, right.elem)
        return ListType(DYN if elem is None else elem)
    if isinstance(left, MapType) and isinstance(right, MapType):
        key = _join(left.key, right.key)
        value = _join(left.value, right.value)
        return MapType(DYN if key is None else key, DYN if value is None else value)
    return None


def _join_all(types: list[CelType]) -> CelType:
    """Element type of a literal: the common type, or ``dyn`` for mixed elements."""
    if not types:
        return DYN
    result: CelType = types[0]
    for other in types[1:]:
        joined = _join(result, other)
        if joined is None:
            return DYN
        result = joined
    return result


class _Checker:
    def __init__(self, source: str, env: Mapping[str, CelType]) -> None:
        self.source = source
        self.env = env
        self.scopes: list[tuple[str, CelType]] = []
        self.result = CheckResult()

    # ------------------------------------------------------------------ errors

    def error(
        self,
        message: str,
        start: int,
        end: int,
        *,
        hint: str | None = None,
        reason: str = "type",
    ) -> ExpressionTypeError:
        return ExpressionTypeError(
            message,
            source=self.source,
            offset=start,
            length=end - start,
            hint=hint,
            reason=reason,
        )

    def unsupported(
        self, message: str, start: int, end: int, hint: str | None = None
    ) -> ExpressionSyntaxError:
        return ExpressionSyntaxError(
            message,
            source=self.source,
            offset=start,
            length=end - start,
            hint=hint,
            reason="unsupported",
        )

    def no_overload(self, op: str, types: list[CelType], start: int, length: int) -> ExpressionTypeError:
        kinds = " and ".join(str(t) for t in types)
        return self.error(f"no matching overload for {op!r} on {kinds}", start, start + length)

    # ------------------------------------------------------------------ dispatch

    def visit(self, node: ast.Node, *, record: bool = True) -> CelType:
        result = self._visit(node, record=record)
        self.result.types[id(node)] = result
        return result

    def _visit(self, node: ast.Node, *, record: bool) -> CelType:
        if isinstance(node, ast.Literal):
            return node.type
        if isinstance(node, ast.Ident):
            return self.ident(node, record=record)
        if isinstance(node, ast.Select):
            return self.select(node, record=record)
        if isinstance(node, ast.Has):
            return self.has(node)
        if isinstance(node, ast.Index):
            return self.index(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Unary):
            return self.unary(node)
        if isinstance(node, ast.Binary):
            return self.binary(node)
        if isinstance(node, ast.And | ast.Or):
            return self.logical(node)
        if isinstance(node, ast.Conditional):
            return self.conditional(node)
        if isinstance(node, ast.ListLit):
            return ListType(_join_all([self.visit(e) for e in node.elements]))
        if isinstance(node, ast.MapLit):
            return self.map_literal(node)
        if isinstance(node, ast.Comprehension):
            return self.comprehension(node)
        raise AssertionError(type(node))  # pragma: no cover  the parser makes no other node

    # ------------------------------------------------------------------ names

    def lookup(self, name: str) -> tuple[CelType, bool] | None:
        """Type of ``name`` and whether it is a context root (not an iteration variable)."""
        for var, var_type in reversed(self.scopes):
            if var == name:
                return var_type, False
        if name in self.env:
            return self.env[name], True
        return None

    def ident(self, node: ast.Ident, *, record: bool) -> CelType:
        found = self.lookup(node.name)
        if found is None:
            raise self.unknown_root(node)
        cel_type, is_root = found
        if is_root:
            self.result.roots.add(id(node))
            if record:
                self.result.references[id(node)] = node.name
        return cel_type

    def unknown_root(self, node: ast.Ident) -> ExpressionError:
        if node.name in _TYPE_NAMES:
            return self.unsupported(
                f"type names such as {node.name!r} cannot be used as values",
                node.start,
                node.end,
            )
        hint: str | None
        if node.name in FOREIGN_LITERALS:
            # True, None, nil...: another language's literal, not a misspelt attribute.
            hint = cel_writes(node.name, FOREIGN_LITERALS[node.name])
        else:
            candidates = sorted({*self.env, *(var for var, _ in self.scopes)})
            close = difflib.get_close_matches(node.name, candidates, n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
        return self.error(
            f"unknown attribute {node.name!r}",
            node.start,
            node.end,
            hint=hint,
            reason="unknown_attribute",
        )

    def select(self, node: ast.Select, *, record: bool) -> CelType:
        path = ast.attribute_path(node)
        if path is not None and self.lookup(path[0]) is None and path[-1][:1].isupper():
            # google.protobuf.Timestamp and friends: protobuf names, not attributes.
            raise self.unsupported(
                f"qualified type name {'.'.join(path)!r} is not supported",
                node.start,
                node.end,
            )
        operand = self.visit(node.operand, record=False)
        result = self.field_type(node.operand, operand, node.field, node.field_start)
        if record and path is not None and id(path_root(node)) in self.result.roots:
            self.result.references[id(node)] = ".".join(path)
        return result

    def field_type(self, operand_node: ast.Node, operand: CelType, field: str, field_start: int) -> CelType:
        field_end = field_start + len(field)
        if isinstance(operand, ObjectType):
            found = operand.fields.get(field)
            if found is None:
                raise self.unknown_field(operand_node, operand, field, field_start)
            return found
        if isinstance(operand, MapType):
            if operand.key not in (STRING, DYN):
                raise self.error(
                    f"field selection needs string keys, but the map keys are {operand.key}",
                    field_start,
                    field_end,
                )
            return operand.value
        if operand == DYN:
            return DYN
        raise self.error(f"type {operand} does not support field selection", field_start, field_end)

    def unknown_field(
        self, operand_node: ast.Node, operand: ObjectType, field: str, field_start: int
    ) -> ExpressionTypeError:
        path = ast.attribute_path(operand_node)
        prefix = ".".join(path) if path is not None else operand.name
        close = difflib.get_close_matches(field, sorted(operand.fields), n=1)
        return self.error(
            f"unknown attribute '{prefix}.{field}'",
            field_start,
            field_start + len(field),
            hint=f"did you mean '{prefix}.{close[0]}'?" if close else None,
            reason="unknown_attribute",
        )

    def has(self, node: ast.Has) -> CelType:
        operand = self.visit(node.operand, record=False)
        self.field_type(node.operand, operand, node.field, node.field_start)
        path = ast.attribute_path(node.operand)
        if path is not None and id(path_root(node.operand)) in self.result.roots:
            self.result.references[id(node)] = ".".join((*path, node.field))
        return BOOL

    # ------------------------------------------------------------------ operators

    def index(self, node: ast.Index) -> CelType:
        operand = self.visit(node.operand)
        key = self.visit(node.index)
        where = (node.op_start, 1)
        if isinstance(operand, ListType):
            if key not in (INT, UINT, DYN):
                raise self.no_overload("[]", [operand, key], *where)
            return operand.elem
        if isinstance(operand, MapType):
            if not comparable(operand.key, key):
                raise self.no_overload("[]", [operand, key], *where)
            return operand.value
        if isinstance(operand, ObjectType):
            if isinstance(node.index, ast.Literal) and isinstance(node.index.value, str):
                return self.field_type(node.operand, operand, node.index.value, node.index.start + 1)
            if key not in (STRING, DYN):
                raise self.no_overload("[]", [operand, key], *where)
            return DYN
        if operand == DYN:
            return DYN
        raise self.no_overload("[]", [operand, key], *where)

    def unary(self, node: ast.Unary) -> CelType:
        operand = self.visit(node.operand)
        if node.op == "!":
            if operand not in (BOOL, DYN):
                raise self.no_overload("!", [operand], node.start, 1)
            return BOOL
        if operand not in (INT, DOUBLE, DYN):
            raise self.no_overload("-", [operand], node.start, 1)
        return operand

    def binary(self, node: ast.Binary) -> CelType:
        left = self.visit(node.left)
        right = self.visit(node.right)
        op = node.op
        where = (node.op_start, len(op))
        if op in ("==", "!="):
            if not comparable(left, right):
                raise self.no_overload(op, [left, right], *where)
            return BOOL
        if op in ("<", "<=", ">", ">="):
            if not _orderable(left, right):
                raise self.no_overload(op, [left, right], *where)
            return BOOL
        if op == "in":
            if not _contains(right, left):
                raise self.no_overload(op, [left, right], *where)
            return BOOL
        result = _arithmetic(op, left, right)
        if result is None:
            raise self.no_overload(op, [left, right], *where)
        return result

    def logical(self, node: ast.And | ast.Or) -> CelType:
        op = "&&" if isinstance(node, ast.And) else "||"
        for child in node.children:
            child_type = self.visit(child)
            if child_type not in (BOOL, DYN):
                raise self.error(
                    f"operands of {op!r} must be bool, but this is {child_type}",
                    child.start,
                    child.end,
                )
        return BOOL

    def conditional(self, node: ast.Conditional) -> CelType:
        cond = self.visit(node.cond)
        if cond not in (BOOL, DYN):
            raise self.error(
                f"the condition of '?:' must be bool, but it is {cond}", node.cond.start, node.cond.end
            )
        then = self.visit(node.then)
        otherwise = self.visit(node.otherwise)
        joined = _join(then, otherwise)
        if joined is None:
            raise self.error(
                f"the branches of '?:' have different types: {then} and {otherwise}",
                node.op_start,
                node.op_start + 1,
            )
        return joined

    def map_literal(self, node: ast.MapLit) -> CelType:
        keys: list[CelType] = []
        values: list[CelType] = []
        for key_node, value_node in node.entries:
            key = self.visit(key_node)
            if key not in _KEY_TYPES:
                raise self.error(
                    f"map keys must be int, uint, bool or string, not {key}",
                    key_node.start,
                    key_node.end,
                )
            keys.append(key)
            values.append(self.visit(value_node))
        return MapType(_join_all(keys), _join_all(values))

    # ------------------------------------------------------------------ calls

    def call(self, node: ast.Call) -> CelType:
        args = [self.visit(arg) for arg in node.args]
        target = None if node.target is None else self.visit(node.target)
        name = node.name
        where = (node.name_start, len(name))
        if name == "size":
            operands = args if target is None else [target, *args]
            if len(operands) != 1 or not _sized(operands[0]):
                raise self.no_overload(name, operands, *where)
            return INT
        if name == "dyn":
            if len(args) != 1:
                raise self.no_overload(name, args, *where)
            return DYN
        if name in _CONVERSIONS:
            result, accepted = _CONVERSIONS[name]
            if len(args) != 1 or (args[0] not in accepted and args[0] != DYN):
                raise self.no_overload(name, args, *where)
            return result
        if name in _STRING_METHODS:
            operands = args if target is None else [target, *args]
            if len(operands) != 2 or any(t not in (STRING, DYN) for t in operands):
                raise self.no_overload(name, operands, *where)
            if name == "matches":
                self.literal_regex(node)
            return BOOL
        return self.time_accessor(node, target, args)

    def literal_regex(self, node: ast.Call) -> None:
        pattern = node.args[-1]
        if isinstance(pattern, ast.Literal) and isinstance(pattern.value, str):
            try:
                self.result.regexes[id(node)] = compile_regex(pattern.value)
            except ValueError as exc:
                raise ExpressionSyntaxError(
                    f"invalid regular expression: {exc}",
                    source=self.source,
                    offset=pattern.start,
                    length=pattern.end - pattern.start,
                    reason="regex",
                ) from None

    def time_accessor(self, node: ast.Call, target: CelType | None, args: list[CelType]) -> CelType:
        name = node.name
        operands = [t for t in (target, *args) if t is not None]
        where = (node.name_start, len(name))
        if target == TIMESTAMP and name in TIMESTAMP_PARTS:
            allowed = len(args) == 0 or (len(args) == 1 and args[0] in (STRING, DYN))
        elif target == DURATION and name in DURATION_PARTS:
            allowed = len(args) == 0
        else:
            allowed = target == DYN and len(args) <= 1
        if not allowed:
            raise self.no_overload(name, operands, *where)
        if node.args:
            zone = node.args[0]
            if isinstance(zone, ast.Literal) and isinstance(zone.value, str):
                try:
                    parse_timezone(zone.value)
                except ValueError as exc:
                    raise self.unsupported(str(exc), zone.start, zone.end) from None
        return INT

    # ------------------------------------------------------------------ macros

    def comprehension(self, node: ast.Comprehension) -> CelType:
        range_type = self.visit(node.range)
        if isinstance(range_type, ListType):
            var_type = range_type.elem
        elif isinstance(range_type, MapType):
            var_type = range_type.key
        elif isinstance(range_type, ObjectType):
            var_type = STRING
        elif range_type == DYN:
            var_type = DYN
        else:
            raise self.error(
                f"{node.macro}() needs a list or map, but this is {range_type}",
                node.range.start,
                node.range.end,
            )
        self.scopes.append((node.var, var_type))
        try:
            if node.predicate is not None:
                predicate = self.visit(node.predicate)
                if predicate not in (BOOL, DYN):
                    raise self.error(
                        f"the predicate of {node.macro}() must be bool, but it is {predicate}",
                        node.predicate.start,
                        node.predicate.end,
                    )
            transform = None if node.transform is None else self.visit(node.transform)
        finally:
            self.scopes.pop()
        if node.macro == "map":
            assert transform is not None  # noqa: S101  the parser always sets it for map()
            return ListType(transform)
        if node.macro == "filter":
            return ListType(var_type)
        return BOOL


def path_root(node: ast.Node) -> ast.Node:
    """The innermost operand of a selection chain (the identifier of ``a.b.c``)."""
    while isinstance(node, ast.Select):
        node = node.operand
    return node


def _orderable(left: CelType, right: CelType) -> bool:
    if left in _NUMERIC and right in _NUMERIC:
        return True
    if left == DYN:
        return right == DYN or right in _ORDERED
    if right == DYN:
        return left in _ORDERED
    return left == right and left in _ORDERED


def _contains(container: CelType, item: CelType) -> bool:
    if isinstance(container, ListType):
        return comparable(item, container.elem)
    if isinstance(container, MapType):
        return comparable(item, container.key)
    if isinstance(container, ObjectType):
        return item in (STRING, DYN)
    return container == DYN


def _sized(operand: CelType) -> bool:
    return operand in (STRING, BYTES, DYN) or isinstance(operand, ListType | MapType | ObjectType)


def _arithmetic(op: str, left: CelType, right: CelType) -> CelType | None:
    """Result type of an arithmetic operator, or ``None`` when no overload applies."""
    same = _SAME_KIND_ARITHMETIC[op]
    if left == right and left in same:
        return left
    mixed = _MIXED_ARITHMETIC.get((op, left, right))
    if mixed is not None:
        return mixed
    if op == "+" and isinstance(left, ListType) and isinstance(right, ListType):
        elem = _join(left.elem, right.elem)
        return None if elem is None else ListType(elem)
    if DYN in (left, right):
        known = right if left == DYN else left
        if known == DYN:
            return DYN
        if known in same and known != DURATION:
            # Only the same-kind overload can apply, so the result has that kind.
            return known
        mixed_operands = {t for key in _MIXED_ARITHMETIC if key[0] == op for t in key[1:]}
        if known in same | mixed_operands or (op == "+" and isinstance(known, ListType)):
            return DYN
    return None
