"""A documented subset of CEL (the Common Expression Language) for policy conditions.

Conditions are parsed, type-checked against the context schema and compiled to a tree
of Python closures once, at load time; evaluation then only runs those closures.
Policy text is never passed to ``eval`` or ``exec``.

::

    from tierpolicy.engine.cel import BOOL, DOUBLE, ObjectType, compile_expression

    env = {
        "seller": ObjectType("seller", {"verified": BOOL}),
        "metrics": ObjectType("metrics", {"rating": DOUBLE}),
    }
    program = compile_expression("seller.verified && metrics.rating >= 4.5", env)
    program.evaluate({"seller": {"verified": True}, "metrics": {"rating": 4.7}})  # True

Run-time values are plain Python objects: int, :class:`UInt` (uint), float (double),
str, bytes, bool, ``None`` (null), list or tuple, any ``Mapping`` (maps and context
objects), timezone-aware ``datetime`` (timestamp) and ``timedelta`` (duration).
Timestamps and durations have microsecond precision; finer digits are truncated.
"""

from ._compiler import MAX_ITERATIONS, compile_expression
from ._parser import MAX_EXPRESSION_LENGTH, MAX_NESTING
from ._program import Clause, Program
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
    PrimitiveType,
    parse_type,
)
from ._values import UInt

__all__ = [
    "BOOL",
    "BYTES",
    "DOUBLE",
    "DURATION",
    "DYN",
    "INT",
    "MAX_EXPRESSION_LENGTH",
    "MAX_ITERATIONS",
    "MAX_NESTING",
    "NULL_TYPE",
    "STRING",
    "TIMESTAMP",
    "UINT",
    "CelType",
    "Clause",
    "ListType",
    "MapType",
    "ObjectType",
    "PrimitiveType",
    "Program",
    "UInt",
    "compile_expression",
    "parse_type",
]
