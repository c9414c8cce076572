"""CEL types as immutable value objects, and the parser for their textual names.

Types describe what the checker knows statically about an expression. ``DYN`` means
"not known until run time": it is accepted wherever a type is expected and the runtime
checks the actual value instead.

Type names are written the way policy authors declare context attributes:
``bool``, ``int``, ``uint``, ``double``, ``string``, ``bytes``, ``null_type``,
``timestamp``, ``duration``, ``dyn``, ``list<T>`` and ``map<K, V>``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from types import MappingProxyType
from typing import TYPE_CHECKING

from tierpolicy.engine._exceptions import ExpressionTypeError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "BOOL",
    "BYTES",
    "DOUBLE",
    "DURATION",
    "DYN",
    "INT",
    "NULL_TYPE",
    "STRING",
    "TIMESTAMP",
    "UINT",
    "CelType",
    "ListType",
    "MapType",
    "ObjectType",
    "PrimitiveType",
    "parse_type",
]


class CelType:
    """Base class of every CEL type.

    Instances are immutable and compare by value, so ``parse_type("list<int>") ==
    ListType(INT)``. ``str()`` gives the name in the syntax :func:`parse_type` reads.
    """

    __slots__ = ()


@dataclasses.dataclass(frozen=True, slots=True)
class PrimitiveType(CelType):
    """A type without parameters, such as ``int`` or ``timestamp``.

    Attributes:
        name: The CEL name of the type.
    """

    name: str

    def __str__(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True, slots=True)
class ListType(CelType):
    """A list whose elements have type ``elem``.

    Attributes:
        elem: The element type.
    """

    elem: CelType

    def __str__(self) -> str:
        return f"list<{self.elem}>"


@dataclasses.dataclass(frozen=True, slots=True)
class MapType(CelType):
    """A map from ``key`` to ``value``.

    Attributes:
        key: The key type (``int``, ``uint``, ``bool``, ``string`` or ``dyn``).
        value: The value type.
    """

    key: CelType
    value: CelType

    def __str__(self) -> str:
        return f"map<{self.key}, {self.value}>"


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectType(CelType):
    """A declared context object with a fixed set of known fields.

    At run time an object is a plain mapping; the type only tells the checker which
    fields exist, so a misspelt field is a load error rather than a silent deny. A field
    that is declared but absent from the context is a run-time error (or ``false`` under
    ``has()``).

    Attributes:
        name: The object's name, used in messages (for example ``"seller"``).
        fields: Field name to field type; stored as a read-only copy.
    """

    name: str
    fields: Mapping[str, CelType]

    def __post_init__(self) -> None:
        # A read-only copy: the type is shared by every program compiled against it.
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    def __hash__(self) -> int:
        return hash((self.name, frozenset(self.fields.items())))

    def __str__(self) -> str:
        return self.name


BOOL = PrimitiveType("bool")
INT = PrimitiveType("int")
UINT = PrimitiveType("uint")
DOUBLE = PrimitiveType("double")
STRING = PrimitiveType("string")
BYTES = PrimitiveType("bytes")
NULL_TYPE = PrimitiveType("null_type")
TIMESTAMP = PrimitiveType("timestamp")
DURATION = PrimitiveType("duration")
DYN = PrimitiveType("dyn")

_PRIMITIVES: Mapping[str, CelType] = MappingProxyType(
    {t.name: t for t in (BOOL, INT, UINT, DOUBLE, STRING, BYTES, NULL_TYPE, TIMESTAMP, DURATION, DYN)}
)
# CEL allows only these as map keys; dyn defers the check to run time.
_KEY_TYPES = frozenset({BOOL, INT, UINT, STRING, DYN})

_TYPE_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[<>,])|(?P<bad>\S))")


def parse_type(text: str) -> CelType:
    """Parse a type name such as ``int``, ``list<string>`` or ``map<string, int>``.

    Args:
        text: The type name.

    Returns:
        The type.

    Raises:
        ExpressionTypeError: With ``reason="type_name"`` and the offset of the problem
            inside ``text`` when the name is not a CEL type this package supports.
    """
    return _TypeParser(text).parse()


class _TypeParser:
    """A tiny recursive-descent parser over the type-name grammar."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._tokens: list[tuple[str, int]] = []
        for match in _TYPE_TOKEN.finditer(text):
            word = match.group("name") or match.group("punct") or match.group("bad")
            if word:
                self._tokens.append((word, match.start(match.lastgroup or 0)))
        self._pos = 0

    def parse(self) -> CelType:
        result = self._type(depth=0)
        if self._pos < len(self._tokens):
            word, offset = self._tokens[self._pos]
            raise self._error(f"unexpected {word!r} after type name", offset, len(word))
        return result

    def _type(self, depth: int) -> CelType:
        if depth > 32:
            raise self._error("type name nests too deeply", self._offset(), 1)
        word, offset = self._next("a type name")
        if word in _PRIMITIVES:
            return _PRIMITIVES[word]
        if word == "list":
            self._expect("<")
            elem = self._type(depth + 1)
            self._expect(">")
            return ListType(elem)
        if word == "map":
            self._expect("<")
            key_offset = self._offset()
            key = self._type(depth + 1)
            if key not in _KEY_TYPES:
                raise self._error(
                    f"map keys must be int, uint, bool or string, not {key}",
                    key_offset,
                    1,
                )
            self._expect(",")
            value = self._type(depth + 1)
            self._expect(">")
            return MapType(key, value)
        raise self._error(f"unknown type {word!r}", offset, len(word), hint=_suggest(word))

    def _offset(self) -> int:
        if self._pos < len(self._tokens):
            return self._tokens[self._pos][1]
        return len(self._text)

    def _next(self, expected: str) -> tuple[str, int]:
        if self._pos >= len(self._tokens):
            raise self._error(f"expected {expected}, found end of text", len(self._text), 1)
        found = self._tokens[self._pos]
        self._pos += 1
        return found

    def _expect(self, punct: str) -> None:
        word, offset = self._next(repr(punct))
        if word != punct:
            raise self._error(f"expected {punct!r}, found {word!r}", offset, len(word))

    def _error(self, message: str, offset: int, length: int, hint: str | None = None) -> ExpressionTypeError:
        return ExpressionTypeError(
            message,
            source=self._text,
            offset=offset,
            length=length,
            hint=hint,
            reason="type_name",
        )


def _suggest(name: str) -> str | None:
    candidates = [*_PRIMITIVES, "list", "map"]
    close = difflib.get_close_matches(name.lower(), candidates, n=1)
    return f"did you mean {close[0]!r}?" if close else None
