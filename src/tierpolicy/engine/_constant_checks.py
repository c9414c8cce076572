"""Conditions that are always true or always false, found by constant folding (TP306).

Folding is deliberately shallow, so a verdict is never a guess: literals; ``!``; ``&&``
and ``||`` (one ``false`` operand makes an ``&&`` false and one ``true`` makes an ``||``
true, whatever the other operands do, as CEL's error-absorbing logic says); ``? :``
with a constant condition; comparisons of two literals of one type; and an attribute
compared with itself (``x == x``) for types whose values always equal themselves (not
``double``, where NaN does not). Anything else (functions, arithmetic, macros, ``in``)
is left unknown.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

from ._diagnostics import Code
from .cel import _ast as ast
from .cel._parser import parse
from .cel._types import BOOL, BYTES, DOUBLE, DURATION, INT, STRING, TIMESTAMP, UINT, ObjectType

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._compiling import CompileContext, ParsedDocument, Path_
    from .cel import CelType

__all__ = ["constant_value", "report_constant"]

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_SELF_COMPARE = {"==": True, "<=": True, ">=": True, "!=": False, "<": False, ">": False}
_ORDERED_LITERALS = frozenset({INT, UINT, DOUBLE, STRING, BOOL, BYTES})
_REFLEXIVE = frozenset({INT, UINT, STRING, BOOL, BYTES, TIMESTAMP, DURATION})


class _Unknown:
    """The value of an expression that folding cannot decide."""


UNKNOWN = _Unknown()


def _attribute_type(environment: Mapping[str, CelType], path: tuple[str, ...]) -> CelType | None:
    root, *fields = path
    found: CelType | None = environment.get(root)
    for field in fields:
        if not isinstance(found, ObjectType):
            return None
        found = found.fields.get(field)
    return found


def _literal(node: ast.Node) -> tuple[object, CelType] | None:
    if isinstance(node, ast.Literal):
        return node.value, node.type
    if (
        isinstance(node, ast.Unary)
        and node.op == "-"
        and isinstance(node.operand, ast.Literal)
        and node.operand.type in {INT, DOUBLE}
        and isinstance(node.operand.value, int | float)
        and not isinstance(node.operand.value, bool)
    ):
        return -node.operand.value, node.operand.type
    return None


def _compare(node: ast.Binary, environment: Mapping[str, CelType]) -> object:
    compare = _COMPARE.get(node.op)
    if compare is None:
        return UNKNOWN
    left, right = _literal(node.left), _literal(node.right)
    if left is not None and right is not None:
        (lvalue, ltype), (rvalue, rtype) = left, right
        if ltype == rtype and ltype in _ORDERED_LITERALS:
            return bool(compare(lvalue, rvalue))
        return UNKNOWN
    path = ast.attribute_path(node.left)
    if (
        path is not None
        and path == ast.attribute_path(node.right)
        and _attribute_type(environment, path) in _REFLEXIVE
    ):
        return _SELF_COMPARE[node.op]
    return UNKNOWN


def _fold(node: ast.Node, environment: Mapping[str, CelType]) -> object:
    if isinstance(node, ast.Literal):
        return node.value if node.type == BOOL else UNKNOWN
    if isinstance(node, ast.Unary) and node.op == "!":
        value = _fold(node.operand, environment)
        return not value if isinstance(value, bool) else UNKNOWN
    if isinstance(node, ast.And | ast.Or):
        decisive = isinstance(node, ast.Or)  # true decides an ||, false decides an &&
        values = [_fold(child, environment) for child in node.children]
        if decisive in values:
            return decisive
        return (not decisive) if all(v is (not decisive) for v in values) else UNKNOWN
    if isinstance(node, ast.Conditional):
        condition = _fold(node.cond, environment)
        if isinstance(condition, bool):
            return _fold(node.then if condition else node.otherwise, environment)
        return UNKNOWN
    if isinstance(node, ast.Binary):
        return _compare(node, environment)
    return UNKNOWN


def constant_value(source: str, environment: Mapping[str, CelType]) -> bool | None:
    """Whether a condition that compiled is always true or always false.

    Args:
        source: The condition's text; it must already have compiled without problems.
        environment: The context schema the condition was compiled against.

    Returns:
        ``True`` or ``False`` when the condition always has that value (whenever it can
        be evaluated at all), else ``None``.
    """
    value = _fold(parse(source), environment)
    return value if isinstance(value, bool) else None


def report_constant(c: CompileContext, item: ParsedDocument, path: Path_, text: str) -> None:
    """Warn (TP306) at the condition when it compiled and is always true or always false.

    Args:
        c: The compile context; the warning goes to its collector.
        item: The document the condition is in.
        path: The condition's path in the document.
        text: The condition's text, already compiled without problems.
    """
    value = constant_value(text, c.environment)
    if value is None:
        return
    hint = (
        "it holds for every seller, as if there were no condition: remove it, or fix it"
        if value
        else "it never holds, so what it guards never applies: fix it, or remove what it guards"
    )
    c.out.add(
        item.doc.position_of(path),
        Code.CONSTANT_CONDITION,
        f"condition {text!r} is always {'true' if value else 'false'}",
        hint=hint,
        severity="warning",
    )
