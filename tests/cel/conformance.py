"""Reader for the official CEL conformance cases (google/cel-spec ``SimpleTestFile``).

The cases ship as text-format protobuf (``tests/simple/testdata/*.textproto`` in
google/cel-spec). Rather than depend on ``protobuf`` and the cel-spec descriptors, this
module parses the small part of the text format those files use and turns it into plain
dataclasses:

* :func:`parse_textproto` tokenizes and parses any text-format message into
  :class:`Node` trees (fields in file order, scalars kept raw).
* :func:`load_file` interprets a tree as a ``SimpleTestFile`` and returns
  :class:`ConformanceCase` objects. Every field name is checked against the proto
  schema, so a future file using a field this reader does not understand fails loudly
  instead of being misread.

Values are kept as tagged :class:`Value` objects (CEL kind plus payload) so that int,
uint and double stay distinct; the test module converts them to runtime values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

# --------------------------------------------------------------------------- tokens

_TOKEN_RE = re.compile(
    r"""
      (?P<skip>\s+|\#[^\n]*)
    | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    | (?P<extension>\[[^\]\s]+\])
    | (?P<punct>[{}<>:,;])
    | (?P<word>[-+.\w]+)
    """,
    re.VERBOSE,
)

_SIMPLE_ESCAPES = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
    "'": b"'",
    '"': b'"',
    "?": b"?",
}
_OCTAL_DIGITS = frozenset("01234567")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class TextprotoError(ValueError):
    """The text is not text-format protobuf this reader understands."""


@dataclass(frozen=True)
class Scalar:
    """A scalar field value: a quoted string (as bytes) or a bare word."""

    text: bytes | str

    def as_bytes(self) -> bytes:
        """Return the payload of a quoted string."""
        if not isinstance(self.text, bytes):
            raise TextprotoError(f"expected a quoted string, got {self.text!r}")
        return self.text

    def as_str(self) -> str:
        """Return a quoted string decoded as UTF-8."""
        return self.as_bytes().decode("utf-8")

    def as_word(self) -> str:
        """Return a bare word (number, enum constant, true/false)."""
        if not isinstance(self.text, str):
            raise TextprotoError(f"expected a bare word, got {self.text!r}")
        return self.text


@dataclass
class Node:
    """A parsed message: its fields in file order (repeated fields appear repeatedly)."""

    fields: list[tuple[str, Node | Scalar]] = field(default_factory=list)

    def names(self) -> set[str]:
        """Return the distinct field names present."""
        return {name for name, _ in self.fields}

    def all(self, name: str) -> list[Node | Scalar]:
        """Return every value of field ``name``."""
        return [value for key, value in self.fields if key == name]

    def one(self, name: str) -> Node | Scalar | None:
        """Return the value of a singular field, or ``None`` when absent."""
        values = self.all(name)
        if len(values) > 1:
            raise TextprotoError(f"field {name!r} given {len(values)} times")
        return values[0] if values else None

    def node(self, name: str) -> Node | None:
        """Return a singular message field."""
        value = self.one(name)
        if value is not None and not isinstance(value, Node):
            raise TextprotoError(f"field {name!r} must be a message")
        return value

    def nodes(self, name: str) -> list[Node]:
        """Return a repeated message field."""
        values = self.all(name)
        if not all(isinstance(v, Node) for v in values):
            raise TextprotoError(f"field {name!r} must be a message")
        return [v for v in values if isinstance(v, Node)]

    def scalar(self, name: str) -> Scalar | None:
        """Return a singular scalar field."""
        value = self.one(name)
        if value is not None and not isinstance(value, Scalar):
            raise TextprotoError(f"field {name!r} must be a scalar")
        return value

    def string(self, name: str, default: str = "") -> str:
        """Return a singular string field decoded as UTF-8."""
        value = self.scalar(name)
        return default if value is None else value.as_str()

    def boolean(self, name: str) -> bool:
        """Return a singular bool field (absent means false)."""
        value = self.scalar(name)
        if value is None:
            return False
        word = value.as_word()
        if word in {"true", "True", "t", "1"}:
            return True
        if word in {"false", "False", "f", "0"}:
            return False
        raise TextprotoError(f"field {name!r}: not a bool: {word!r}")

    def expect_fields(self, what: str, allowed: set[str]) -> None:
        """Raise when the message has a field its schema does not define."""
        unknown = self.names() - allowed
        if unknown:
            raise TextprotoError(f"{what}: unsupported field(s) {sorted(unknown)}")


def _unescape(body: str) -> bytes:
    """Decode the body of a quoted text-format string (C escapes) to bytes."""
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        i += 1
        char = body[i]
        if char in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[char]
            i += 1
        elif char in _OCTAL_DIGITS:
            end = i
            while end < len(body) and end < i + 3 and body[end] in _OCTAL_DIGITS:
                end += 1
            out.append(int(body[i:end], 8) & 0xFF)
            i = end
        elif char in "xX":
            end = i + 1
            while end < len(body) and end < i + 3 and body[end] in _HEX_DIGITS:
                end += 1
            out.append(int(body[i + 1 : end], 16))
            i = end
        elif char in "uU":
            width = 4 if char == "u" else 8
            out += chr(int(body[i + 1 : i + 1 + width], 16)).encode("utf-8")
            i += 1 + width
        else:
            raise TextprotoError(f"unknown escape \\{char}")
    return bytes(out)


def _tokenize(text: str) -> Iterator[tuple[str, str]]:
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            line = text.count("\n", 0, pos) + 1
            raise TextprotoError(f"line {line}: unexpected {text[pos : pos + 20]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "skip":
            yield kind, match.group()


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = list(_tokenize(text))
        self._pos = 0

    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise TextprotoError("unexpected end of input")
        self._pos += 1
        return token

    def parse_message(self, closer: str | None) -> Node:
        node = Node()
        while True:
            token = self._peek()
            if token is None:
                if closer is not None:
                    raise TextprotoError(f"missing {closer!r}")
                return node
            if token == ("punct", closer):
                self._pos += 1
                return node
            node.fields.append(self._parse_field())
            if self._peek() in {("punct", ","), ("punct", ";")}:
                self._pos += 1

    def _parse_field(self) -> tuple[str, Node | Scalar]:
        kind, name = self._take()
        if kind not in {"word", "extension"}:
            raise TextprotoError(f"expected a field name, got {name!r}")
        has_colon = self._peek() == ("punct", ":")
        if has_colon:
            self._pos += 1
        kind, text = self._take()
        if (kind, text) in {("punct", "{"), ("punct", "<")}:
            return name, self.parse_message("}" if text == "{" else ">")
        if not has_colon:
            raise TextprotoError(f"field {name!r}: expected ':' or a message")
        if kind == "string":
            parts = [_unescape(text[1:-1])]
            while (token := self._peek()) is not None and token[0] == "string":
                parts.append(_unescape(self._take()[1][1:-1]))
            return name, Scalar(b"".join(parts))
        if kind == "word":
            return name, Scalar(text)
        raise TextprotoError(f"field {name!r}: unexpected {text!r}")


def parse_textproto(text: str) -> Node:
    """Parse text-format protobuf into a :class:`Node` tree."""
    return _Parser(text).parse_message(None)


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Value:
    """A CEL value from a ``cel.expr.Value`` message, tagged with its CEL kind.

    ``kind`` is one of ``null``, ``bool``, ``int``, ``uint``, ``double``, ``string``,
    ``bytes``, ``list`` (payload: tuple of values), ``map`` (payload: tuple of key/value
    pairs), ``type`` (payload: the type name), ``duration`` (payload: nanoseconds),
    ``timestamp`` (payload: nanoseconds since the Unix epoch) or ``object`` (an ``Any``
    of another message type; payload: the type name).
    """

    kind: str
    payload: object = None


@dataclass(frozen=True)
class TypeSpec:
    """A CEL type from a ``cel.expr.Type`` message.

    ``kind`` is ``primitive`` / ``well_known`` / ``wrapper`` / ``message`` (``name``
    holds the enum or message name), ``list`` / ``map`` (``params`` hold the element, or
    key and value, types), ``dyn`` or ``null``.
    """

    kind: str
    name: str = ""
    params: tuple[TypeSpec, ...] = ()


@dataclass(frozen=True)
class ConformanceCase:
    """One ``SimpleTest`` of the conformance suite."""

    file: str
    section: str
    name: str
    description: str
    expr: str
    disable_check: bool
    disable_macros: bool
    container: str
    type_env: tuple[tuple[str, TypeSpec], ...]
    bindings: tuple[tuple[str, Value], ...]
    expected: Value | None
    """The expected value; ``None`` when the case expects an evaluation error."""
    error_messages: tuple[str, ...]

    @property
    def id(self) -> str:
        """Return the pytest id ``file/section/name``."""
        return f"{self.file}/{self.section}/{self.name}"

    @property
    def expects_error(self) -> bool:
        """Return whether the case expects an error instead of a value."""
        return self.expected is None


_VALUE_FIELDS = {
    "null_value",
    "bool_value",
    "int64_value",
    "uint64_value",
    "double_value",
    "string_value",
    "bytes_value",
    "enum_value",
    "object_value",
    "map_value",
    "list_value",
    "type_value",
}
_TEST_FIELDS = {
    "name",
    "description",
    "expr",
    "disable_macros",
    "disable_check",
    "check_only",
    "type_env",
    "container",
    "locale",
    "bindings",
    "value",
    "typed_result",
    "eval_error",
    "any_eval_errors",
    "unknown",
    "any_unknowns",
}
_RESULT_FIELDS = {
    "value",
    "typed_result",
    "eval_error",
    "any_eval_errors",
    "unknown",
    "any_unknowns",
}
_SUPPORTED_RESULTS = {"value", "eval_error"}


def _parse_double(word: str) -> float:
    lowered = word.lower().lstrip("+")
    sign = -1.0 if lowered.startswith("-") else 1.0
    magnitude = lowered.lstrip("-")
    if magnitude in {"inf", "infinity"}:
        return sign * math.inf
    if magnitude == "nan":
        return math.nan
    return float(word)


def _parse_int(word: str) -> int:
    return int(word, 0)


def _parse_value(node: Node) -> Value:
    node.expect_fields("Value", _VALUE_FIELDS)
    if len(node.fields) != 1:
        raise TextprotoError(f"Value must set exactly one kind, got {sorted(node.names())}")
    name, raw = node.fields[0]
    if isinstance(raw, Scalar):
        return _parse_scalar_value(name, raw)
    if name == "list_value":
        raw.expect_fields("ListValue", {"values"})
        return Value("list", tuple(_parse_value(v) for v in raw.nodes("values")))
    if name == "map_value":
        raw.expect_fields("MapValue", {"entries"})
        entries = []
        for entry in raw.nodes("entries"):
            entry.expect_fields("MapValue.Entry", {"key", "value"})
            key, value = entry.node("key"), entry.node("value")
            if key is None or value is None:
                raise TextprotoError("map entry needs a key and a value")
            entries.append((_parse_value(key), _parse_value(value)))
        return Value("map", tuple(entries))
    if name == "object_value":
        return _parse_any(raw)
    raise TextprotoError(f"Value.{name} cannot be a message")


_SCALAR_KINDS: dict[str, tuple[str, Callable[[Scalar], object]]] = {
    "null_value": ("null", lambda _: None),
    "bool_value": ("bool", lambda raw: Node([("b", raw)]).boolean("b")),
    "int64_value": ("int", lambda raw: _parse_int(raw.as_word())),
    "uint64_value": ("uint", lambda raw: _parse_int(raw.as_word())),
    "double_value": ("double", lambda raw: _parse_double(raw.as_word())),
    "string_value": ("string", Scalar.as_str),
    "bytes_value": ("bytes", Scalar.as_bytes),
    "type_value": ("type", Scalar.as_str),
}


def _parse_scalar_value(name: str, raw: Scalar) -> Value:
    if name not in _SCALAR_KINDS:
        raise TextprotoError(f"Value.{name} is not supported by this reader")
    kind, convert = _SCALAR_KINDS[name]
    return Value(kind, convert(raw))


def _parse_any(node: Node) -> Value:
    if len(node.fields) != 1 or not isinstance(node.fields[0][1], Node):
        raise TextprotoError("object_value must hold one [type_url] { ... } message")
    type_url, message = node.fields[0]
    type_name = type_url.strip("[]").rsplit("/", 1)[-1]
    assert isinstance(message, Node)
    if type_name in {"google.protobuf.Duration", "google.protobuf.Timestamp"}:
        message.expect_fields(type_name, {"seconds", "nanos"})
        seconds_field, nanos_field = message.scalar("seconds"), message.scalar("nanos")
        seconds = 0 if seconds_field is None else _parse_int(seconds_field.as_word())
        nanos = 0 if nanos_field is None else _parse_int(nanos_field.as_word())
        kind = "duration" if type_name.endswith("Duration") else "timestamp"
        return Value(kind, seconds * 1_000_000_000 + nanos)
    return Value("object", type_name)


def _parse_type(node: Node) -> TypeSpec:
    if len(node.fields) != 1:
        raise TextprotoError(f"Type must set exactly one kind, got {sorted(node.names())}")
    name, raw = node.fields[0]
    if name in {"primitive", "well_known", "wrapper", "message_type"}:
        if not isinstance(raw, Scalar):
            raise TextprotoError(f"Type.{name} must be a scalar")
        text = raw.as_str() if name == "message_type" else raw.as_word()
        return TypeSpec("message" if name == "message_type" else name, text)
    if name == "dyn":
        return TypeSpec("dyn")
    if name == "null":
        return TypeSpec("null")
    if name == "list_type" and isinstance(raw, Node):
        raw.expect_fields("ListType", {"elem_type"})
        elem = raw.node("elem_type")
        return TypeSpec("list", params=(_parse_type(elem or Node()),))
    if name == "map_type" and isinstance(raw, Node):
        raw.expect_fields("MapType", {"key_type", "value_type"})
        key, value = raw.node("key_type"), raw.node("value_type")
        return TypeSpec("map", params=(_parse_type(key or Node()), _parse_type(value or Node())))
    raise TextprotoError(f"Type.{name} is not supported by this reader")


def _parse_decl(node: Node) -> tuple[str, TypeSpec]:
    node.expect_fields("Decl", {"name", "ident"})
    ident = node.node("ident")
    if ident is None:
        raise TextprotoError("only ident declarations are supported")
    ident.expect_fields("IdentDecl", {"type"})
    type_node = ident.node("type")
    if type_node is None:
        raise TextprotoError("ident declaration without a type")
    return node.string("name"), _parse_type(type_node)


def _parse_binding(node: Node) -> tuple[str, Value]:
    node.expect_fields("bindings entry", {"key", "value"})
    expr_value = node.node("value")
    if expr_value is None:
        raise TextprotoError("binding without a value")
    expr_value.expect_fields("ExprValue", {"value"})
    value = expr_value.node("value")
    if value is None:
        raise TextprotoError("only value bindings are supported")
    return node.string("key"), _parse_value(value)


def _parse_test(file: str, section: str, node: Node) -> ConformanceCase:
    node.expect_fields("SimpleTest", _TEST_FIELDS)
    results = node.names() & _RESULT_FIELDS
    if results - _SUPPORTED_RESULTS:
        raise TextprotoError(f"result kind {sorted(results)} is not supported")
    if node.names() & {"check_only", "locale"}:
        raise TextprotoError("check_only / locale are not supported")
    expected: Value | None
    messages: tuple[str, ...] = ()
    if "eval_error" in results:
        error_set = node.node("eval_error") or Node()
        error_set.expect_fields("ErrorSet", {"errors"})
        messages = tuple(e.string("message") for e in error_set.nodes("errors"))
        expected = None
    else:
        value = node.node("value")
        # A test without a result matcher expects `true` (simple.proto).
        expected = Value("bool", payload=True) if value is None else _parse_value(value)
    return ConformanceCase(
        file=file,
        section=section,
        name=node.string("name"),
        description=node.string("description"),
        expr=node.string("expr"),
        disable_check=node.boolean("disable_check"),
        disable_macros=node.boolean("disable_macros"),
        container=node.string("container"),
        type_env=tuple(_parse_decl(d) for d in node.nodes("type_env")),
        bindings=tuple(_parse_binding(b) for b in node.nodes("bindings")),
        expected=expected,
        error_messages=messages,
    )


def parse_file(text: str, *, file: str) -> list[ConformanceCase]:
    """Parse the text of one ``SimpleTestFile`` into its cases, in file order."""
    root = parse_textproto(text)
    root.expect_fields("SimpleTestFile", {"name", "description", "section"})
    cases = []
    for section in root.nodes("section"):
        section.expect_fields("SimpleTestSection", {"name", "description", "test"})
        section_name = section.string("name")
        cases.extend(_parse_test(file, section_name, test) for test in section.nodes("test"))
    return cases


def load_file(path: Path) -> list[ConformanceCase]:
    """Read one ``*.textproto`` file; cases are named after the file's stem."""
    return parse_file(path.read_text(encoding="utf-8"), file=path.stem)


def load_dir(directory: Path) -> list[ConformanceCase]:
    """Read every ``*.textproto`` file of ``directory`` in name order."""
    cases: list[ConformanceCase] = []
    for path in sorted(directory.glob("*.textproto")):
        cases.extend(load_file(path))
    return cases
