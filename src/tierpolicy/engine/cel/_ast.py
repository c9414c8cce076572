"""The abstract syntax tree the parser builds and the checker and compiler walk.

Every node records the span ``[start, end)`` of source text it came from, so any
problem found later can point into the expression. ``&&`` and ``||`` chains are n-ary
nodes: CEL's error-absorbing logic is commutative, so ``a && (b && c)`` and
``(a && b) && c`` mean the same and flattening keeps trees shallow. Macros (``has``,
``all``, ``exists``, ``exists_one``, ``map``, ``filter``) have their own node types.

Nodes compare by identity (``eq=False``): the checker keys its results by node.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._types import CelType


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Node:
    """Base of all nodes: the source span."""

    start: int
    end: int


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Literal(Node):
    """A literal scalar: its run-time value and type."""

    value: object
    type: CelType


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Ident(Node):
    """A variable: a context root or an iteration variable."""

    name: str


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Select(Node):
    """Field selection ``operand.field``; ``field_start`` locates the field name."""

    operand: Node
    field: str
    field_start: int


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Has(Node):
    """The ``has(operand.field)`` macro: a presence test that never reads the value."""

    operand: Node
    field: str
    field_start: int


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Index(Node):
    """Indexing ``operand[index]``."""

    operand: Node
    index: Node
    op_start: int


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Call(Node):
    """A function ``name(args)`` or method ``target.name(args)`` call."""

    name: str
    target: Node | None
    args: tuple[Node, ...]
    name_start: int


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Unary(Node):
    """``!operand`` or ``-operand``."""

    op: str
    operand: Node


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Binary(Node):
    """Arithmetic, comparison and ``in``; ``op_start`` locates the operator."""

    op: str
    left: Node
    right: Node
    op_start: int


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class And(Node):
    """An n-ary ``&&`` chain."""

    children: tuple[Node, ...]


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Or(Node):
    """An n-ary ``||`` chain."""

    children: tuple[Node, ...]


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Conditional(Node):
    """``cond ? then : otherwise``; ``op_start`` locates the ``?``."""

    cond: Node
    then: Node
    otherwise: Node
    op_start: int


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class ListLit(Node):
    """A list literal."""

    elements: tuple[Node, ...]


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class MapLit(Node):
    """A map literal: (key, value) pairs in source order."""

    entries: tuple[tuple[Node, Node], ...]


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Comprehension(Node):
    """A list/map macro: ``range.macro(var, predicate[, transform])``.

    ``macro`` is ``all``, ``exists``, ``exists_one``, ``filter`` or ``map``. For ``map``
    ``transform`` is set and ``predicate`` is the optional filter; for the others only
    ``predicate`` is set.
    """

    macro: str
    range: Node
    var: str
    var_start: int
    predicate: Node | None
    transform: Node | None
    name_start: int


def children(node: Node) -> Iterator[Node]:
    """Yield the direct children of ``node`` in source order."""
    if isinstance(node, Select | Has):
        yield node.operand
    elif isinstance(node, Index):
        yield node.operand
        yield node.index
    elif isinstance(node, Call):
        if node.target is not None:
            yield node.target
        yield from node.args
    elif isinstance(node, Unary):
        yield node.operand
    elif isinstance(node, Binary):
        yield node.left
        yield node.right
    elif isinstance(node, And | Or):
        yield from node.children
    elif isinstance(node, Conditional):
        yield node.cond
        yield node.then
        yield node.otherwise
    elif isinstance(node, ListLit):
        yield from node.elements
    elif isinstance(node, MapLit):
        for key, value in node.entries:
            yield key
            yield value
    elif isinstance(node, Comprehension):
        yield node.range
        if node.predicate is not None:
            yield node.predicate
        if node.transform is not None:
            yield node.transform


def attribute_path(node: Node) -> tuple[str, ...] | None:
    """Return ``("a", "b", "c")`` for the chain ``a.b.c``, or ``None`` for anything else."""
    parts: list[str] = []
    while isinstance(node, Select):
        parts.append(node.field)
        node = node.operand
    if isinstance(node, Ident):
        parts.append(node.name)
        return tuple(reversed(parts))
    return None
