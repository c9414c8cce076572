"""Read policy YAML into plain Python values, keeping the position of every node.

Policy files are written by people, so the reader is strict in the ways that catch their
mistakes and safe against files that are hostile on purpose:

* **Plain data only.** The result is built from PyYAML's *events*, never from its
  constructors, so no tag can create a Python object. Only the standard tags ``!!str``,
  ``!!int``, ``!!float``, ``!!bool``, ``!!null``, ``!!map`` and ``!!seq`` are accepted;
  any other tag (``!!python/...``, ``!!binary``, ``!!set``, ``!!timestamp``, ``!custom``)
  is an error.
* **YAML 1.2 core schema, not YAML 1.1.** An unquoted ``true``/``True``/``TRUE`` (and the
  ``false`` forms) is a boolean, ``null``/``Null``/``NULL``/``~``/nothing is null,
  ``12``/``-3``/``0o17``/``0x1F`` are integers and ``1.5``/``1e3``/``.inf``/``.nan`` are
  floats. *Everything else is text*: ``yes``, ``no``, ``on``, ``off``, ``y``, ``n``,
  ``2026-01-01``, ``1_000`` and ``12:30`` stay strings. YAML 1.1 (PyYAML's default) turns
  the country code ``NO`` into ``False`` -- the "Norway problem" -- and dates into
  ``datetime`` objects; the core schema does neither. Quoted values are always text.
* **Keys are names.** Mapping keys must be single values; they are kept as the text
  written in the file, so ``1:`` and ``true:`` give the keys ``"1"`` and ``"true"``. A key
  that appears twice in one mapping is an error. YAML 1.1 merge keys (``<<: *base``) are
  not part of YAML 1.2 and get no special meaning: ``<<`` is an ordinary key.
* **Aliases are copies.** ``*name`` repeats the node anchored with ``&name`` earlier in the
  same document; each use is an independent copy whose positions all point at the alias.
* **Bounded.** File size, nesting depth, node count (every alias expansion counts in
  full, which defeats "billion laughs" alias bombs) and value length are limited by
  :class:`YamlLimits`, and the reader stops at the first limit it hits. Nothing recurses,
  so deep nesting cannot exhaust the stack.
* **Never a traceback.** Every problem, including an unexpected failure inside PyYAML,
  becomes a positioned :class:`~tierpolicy.engine._diagnostics.Diagnostic`, and a file
  with any error yields no documents at all.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple, NoReturn, Protocol, TypeAlias, TypeGuard, cast

import yaml

from ._diagnostics import Code, Diagnostic, Position

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["YamlDocument", "YamlLimits", "YamlPath", "read_documents"]

YamlPath: TypeAlias = tuple[str | int, ...]
"""Where a node sits in a document: mapping keys and list indexes from the root."""


@dataclasses.dataclass(frozen=True, slots=True)
class YamlLimits:
    """Bounds that keep reading a hostile file fast and small.

    Attributes:
        max_file_bytes: Largest accepted file, in bytes.
        max_depth: Deepest nesting of lists and mappings (the root collection is level 1).
        max_nodes: Most nodes per file, counting keys and every node of every alias
            expansion.
        max_scalar_chars: Longest single value or key, in characters.
    """

    max_file_bytes: int = 1_048_576
    max_depth: int = 64
    max_nodes: int = 100_000
    max_scalar_chars: int = 65_536


class _Mark(Protocol):
    """What the reader uses of a PyYAML mark (the C and Python parsers have their own)."""

    @property
    def line(self) -> int: ...

    @property
    def column(self) -> int: ...


def _position(file: str, mark: _Mark | None) -> Position:
    """Convert a 0-based PyYAML mark to a 1-based position."""
    if mark is None:
        return Position(file)
    return Position(file, mark.line + 1, mark.column + 1)


class _PositionMap(Mapping[YamlPath, Position]):
    """A read-only map from path to position.

    It keeps PyYAML's marks and builds a :class:`Position` only when one is looked up:
    most positions are never asked for, and creating one per node would dominate the
    cost of reading a large file.
    """

    __slots__ = ("_file", "_marks")

    def __init__(self, file: str, marks: dict[YamlPath, _Mark | None]) -> None:
        self._file = file
        self._marks = marks

    def __getitem__(self, path: YamlPath) -> Position:
        return _position(self._file, self._marks[path])

    def __contains__(self, path: object) -> bool:
        return path in self._marks

    def __iter__(self) -> Iterator[YamlPath]:
        return iter(self._marks)

    def __len__(self) -> int:
        return len(self._marks)

    def __repr__(self) -> str:
        return f"<{len(self._marks)} positions in {self._file}>"


@dataclasses.dataclass(frozen=True, slots=True)
class YamlDocument:
    """One YAML document of a policy file, as plain data plus where each part came from.

    Attributes:
        value: The document's content: ``dict`` (with ``str`` keys), ``list``, ``str``,
            ``int``, ``float``, ``bool`` or ``None``.
        index: 0-based position of the document within its file.
        start: Where the document starts: its first directive (``%YAML``, ``%TAG``),
            else its ``---`` line, else its first content.
        positions: Path of every node to the position of its value; the root is ``()``.
        key_positions: Path of every mapping entry to the position of its key.
    """

    value: object
    index: int
    start: Position
    positions: Mapping[YamlPath, Position]
    key_positions: Mapping[YamlPath, Position]

    def position_of(self, path: Sequence[str | int]) -> Position:
        """Return the position of the value at ``path``.

        A path that does not exist (a missing key, an index past the end, something
        beneath a scalar) falls back to its longest existing prefix, so a diagnostic
        about data that is absent still points at the closest place that is present.

        Args:
            path: Mapping keys and list indexes from the document root.

        Returns:
            The value's position, or that of the nearest existing ancestor.
        """
        found = _longest_known(tuple(path), self.positions)
        return self.positions.get(found, self.start)

    def key_position_of(self, path: Sequence[str | int]) -> Position:
        """Return the position of the key of the entry at ``path``.

        Falls back like :meth:`position_of`; when the nearest existing node is a list
        item or the root, which have no key, its value position is returned.

        Args:
            path: Mapping keys and list indexes from the document root.

        Returns:
            The key's position, or the closest position the document has.
        """
        found = _longest_known(tuple(path), self.positions)
        key = self.key_positions.get(found)
        return key if key is not None else self.positions.get(found, self.start)


def _longest_known(path: YamlPath, known: Mapping[YamlPath, Position]) -> YamlPath:
    """Return the longest prefix of ``path`` (possibly ``()``) that ``known`` contains."""
    while path and path not in known:
        path = path[:-1]
    return path


# ---------------------------------------------------------------- tags and scalars


class _EventSource(Protocol):
    """What the reader uses of a PyYAML loader: its event parser."""

    def get_event(self) -> yaml.Event | None: ...

    def dispose(self) -> None: ...


# libyaml's parser is several times faster; PyYAML's own is the same state machine.
_LOADER: Callable[[str], _EventSource] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STD: Final = "tag:yaml.org,2002:"
_STR: Final = _STD + "str"
_INT: Final = _STD + "int"
_FLOAT: Final = _STD + "float"
_BOOL: Final = _STD + "bool"
_NULL: Final = _STD + "null"
_MAP: Final = _STD + "map"
_SEQ: Final = _STD + "seq"
# ``!`` is YAML's "non-specific" tag: it only says "do not resolve this plain scalar".
_TEXT_TAGS: Final = frozenset({"!", _STR})
_KEY_TAGS: Final = frozenset({"!", _STR, _INT, _FLOAT, _BOOL, _NULL})
_STANDARD_TAGS: Final = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL, _MAP, _SEQ})
_ALLOWED_TAGS: Final = "!!str, !!int, !!float, !!bool, !!null, !!map and !!seq"

_NOT_A_CONSTANT: Final = object()
_CONSTANTS: Final[dict[str, object]] = {
    "": None,
    "~": None,
    "null": None,
    "Null": None,
    "NULL": None,
    "true": True,
    "True": True,
    "TRUE": True,
    "false": False,
    "False": False,
    "FALSE": False,
    **{
        f"{sign}.{inf}": -math.inf if sign == "-" else math.inf
        for sign in ("", "+", "-")
        for inf in ("inf", "Inf", "INF")
    },
    **{f".{nan}": math.nan for nan in ("nan", "NaN", "NAN")},
}
# Every other core-schema scalar that is not text starts with one of these characters;
# testing it first keeps ordinary words away from the regular expression.
_NUMBER_START: Final = frozenset("0123456789+-.")
_NUMBER: Final = re.compile(
    r"(?P<dec>[-+]?[0-9]+)"
    r"|(?P<oct>0o[0-7]+)"
    r"|(?P<hex>0x[0-9a-fA-F]+)"
    r"|(?P<float>[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?)",
    re.ASCII,
)
_BASES: Final = {"dec": 10, "oct": 8, "hex": 16}
# 640 is the lowest digit limit Python lets a process set for int <-> str conversion, so
# no integer we produce can make a later ``str()`` fail, and converting a long digit
# string (quadratic in its length) stays cheap.
_MAX_INT_DIGITS: Final = 640
_INT_BOUND: Final = 10**_MAX_INT_DIGITS

# For an explicitly tagged scalar: what the tag promises, and which resolved types keep it.
_TAGGED: Final[dict[str, tuple[str, tuple[type, ...]]]] = {
    _INT: ("a whole number", (int,)),
    _FLOAT: ("a number", (int, float)),
    _BOOL: ("true or false", (bool,)),
    _NULL: ("null", (type(None),)),
}


class _NumberTooLargeError(ValueError):
    """A plain scalar is an integer with more digits than the reader accepts."""


def resolve_plain(text: str) -> object:
    """Resolve an unquoted, untagged scalar by the YAML 1.2 core schema.

    Raises:
        _NumberTooLargeError: The text is an integer of more than ``_MAX_INT_DIGITS``
            digits.
    """
    value = _CONSTANTS.get(text, _NOT_A_CONSTANT)
    if value is not _NOT_A_CONSTANT:
        return value
    if text[0] not in _NUMBER_START:  # text is not empty: "" is a constant
        return text
    match = _NUMBER.fullmatch(text)
    if match is None:
        return text
    kind = cast("str", match.lastgroup)
    if kind == "float":
        return float(text)
    if len(text) > _MAX_INT_DIGITS:
        raise _NumberTooLargeError
    number = int(text, _BASES[kind])
    if abs(number) >= _INT_BOUND:
        raise _NumberTooLargeError
    return number


def _short_tag(tag: str) -> str:
    """Write a tag the way it usually appears in a file (``!!binary``, ``!custom``)."""
    return "!!" + tag.removeprefix(_STD) if tag.startswith(_STD) else tag


# ---------------------------------------------------------------- syntax errors

_SYNTAX_HINTS: Final = (
    ("mapping values are not allowed", "check the indentation, or quote the value"),
    ("cannot start any token", "quote the value: it starts with a character YAML reserves"),
    ("could not find expected ':'", "write the key followed by ': ', or quote the text"),
    ("expected key", "check the indentation: keys of one mapping start in the same column"),
    ("expected <block end>", "check the indentation: items of one block line up"),
    ("expected '-' indicator", "check the indentation of the '-' list items"),
    ("sequence entries are not allowed", "check the indentation of the '-' list items"),
    ("expected ',' or ']'", "separate list items with ',' and close the list with ']'"),
    ("expected ',' or '}'", "separate entries with ',' and close the mapping with '}'"),
    ("unexpected end of stream", "close the quote or bracket that is still open"),
    ("undefined tag handle", "declare the tag handle with %TAG, or remove the tag"),
    ("unknown escape character", "in double quotes write a backslash as '\\\\'"),
    ("incompatible YAML document", "write '%YAML 1.2', or remove the %YAML line"),
)
_DEFAULT_SYNTAX_HINT: Final = "check the indentation and quoting near this position"
# libyaml refuses to nest deeper than this itself ("exceeded maximum nesting depth"),
# sometimes before the reader sees the events, as it scans ahead inside ``[[[[``.
_LIBYAML_MAX_NESTING: Final = 1000


def _syntax_hint(problem: str) -> str:
    """Pick advice for one of PyYAML's (or libyaml's) problem texts."""
    for fragment, hint in _SYNTAX_HINTS:
        if fragment in problem:
            return hint
    return _DEFAULT_SYNTAX_HINT


# ---------------------------------------------------------------- reading text

_FOREIGN_BOMS: Final = (  # UTF-32 first: its little-endian mark begins like UTF-16's
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
_UTF8_BOM: Final = b"\xef\xbb\xbf"
# Characters YAML does not allow anywhere in a stream (YAML 1.2, section 5.1). Checking
# here gives the same message from the C and the Python parser, with a position.
_NON_PRINTABLE: Final = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_UTF8_HINT: Final = "save the file with UTF-8 encoding"
# Stop gathering after this many problems: a file of 100,000 repeated keys should not
# produce 100,000 diagnostics.
_MAX_DIAGNOSTICS: Final = 100


def _line_column(text: str, index: int) -> tuple[int, int]:
    """Return the 1-based line and column of ``text[index]``.

    ``str.splitlines`` breaks lines where YAML does once the control characters YAML
    forbids are ruled out; the sentinel makes the last line the one holding ``index``.
    """
    lines = (text[:index] + "x").splitlines()
    return len(lines), len(lines[-1])


def _decode(data: bytes, file: str) -> str | Diagnostic:
    """Decode a policy file as strict UTF-8, or explain why it is not UTF-8."""
    for bom, encoding in _FOREIGN_BOMS:
        if data.startswith(bom):
            return Diagnostic(
                Position(file),
                "error",
                Code.NOT_UTF8,
                f"the file is {encoding} text (it starts with a {encoding} byte order "
                "mark); policy files must be UTF-8",
                _UTF8_HINT,
            )
    data = data.removeprefix(_UTF8_BOM)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Everything before the first bad byte is valid, so it decodes cleanly.
        line, column = _line_column(data[: exc.start].decode("utf-8"), exc.start)
        return Diagnostic(
            Position(file, line, column),
            "error",
            Code.NOT_UTF8,
            f"the file is not valid UTF-8 text: byte 0x{data[exc.start]:02X} here is an {exc.reason}",
            _UTF8_HINT,
        )


def _check_characters(text: str, file: str) -> Diagnostic | None:
    """Reject the first character YAML forbids, naming it and where it is."""
    match = _NON_PRINTABLE.search(text)
    if match is None:
        return None
    line, column = _line_column(text, match.start())
    if match.group() == "\0":
        return Diagnostic(
            Position(file, line, column),
            "error",
            Code.NOT_UTF8,
            "the file contains a NUL byte, so it is not UTF-8 text (it may be UTF-16, "
            "UTF-32 or a binary file)",
            _UTF8_HINT,
        )
    return Diagnostic(
        Position(file, line, column),
        "error",
        Code.YAML_SYNTAX,
        f"the file contains the control character U+{ord(match.group()):04X}, which YAML does not allow",
        "remove it, or write it as an escape such as \\t inside double quotes",
    )


# ---------------------------------------------------------------- building values


class _FatalError(Exception):
    """Raised once a diagnostic that ends reading the file has been recorded."""


class _Anchor(NamedTuple):
    """A node anchored with ``&name``, ready to be repeated by ``*name``."""

    value: object
    nodes: int  # how many nodes one copy adds, aliases inside it expanded
    text: str | None  # the source text when the node is a scalar (so it can be a key)


class _Frame:
    """Where the next node goes: the document root, a list, or a mapping."""

    __slots__ = ("anchor", "nodes_before", "path", "value")

    def __init__(self, anchor: str | None, nodes_before: int, value: object) -> None:
        self.anchor = anchor
        self.nodes_before = nodes_before
        self.path: YamlPath = ()
        self.value = value

    def place(self, value: object) -> YamlPath:
        """Put a node's value here and return the node's path."""
        raise NotImplementedError


class _DocumentFrame(_Frame):
    """The document itself, which holds exactly one root node."""

    __slots__ = ()

    def place(self, value: object) -> YamlPath:
        self.value = value
        return ()


class _SequenceFrame(_Frame):
    """A list being filled, one item per node."""

    __slots__ = ("items",)

    def __init__(self, anchor: str | None, nodes_before: int) -> None:
        self.items: list[object] = []
        super().__init__(anchor, nodes_before, self.items)

    def place(self, value: object) -> YamlPath:
        path = (*self.path, len(self.items))
        self.items.append(value)
        return path


class _MappingFrame(_Frame):
    """A mapping being filled, alternately taking a key and its value."""

    __slots__ = ("entries", "key", "wants_key")

    def __init__(self, anchor: str | None, nodes_before: int) -> None:
        self.entries: dict[str, object] = {}
        self.key = ""
        self.wants_key = True
        super().__init__(anchor, nodes_before, self.entries)

    def place(self, value: object) -> YamlPath:
        path = (*self.path, self.key)
        self.entries[self.key] = value
        self.wants_key = True
        return path


class _Reader:
    """Turn one file's event stream into documents, or into diagnostics.

    Work per event is kept small: a dictionary dispatch, a bounds check and, for a
    scalar, a constant-table lookup. Values are placed into their parent as soon as
    they start, so a mapping always knows its keys so far (for duplicate checks).
    """

    def __init__(self, file: str, text: str, limits: YamlLimits) -> None:
        self.file = file
        self.text = text
        self.limits = limits
        self.documents: list[YamlDocument] = []
        self.diagnostics: list[Diagnostic] = []
        # Copied out of ``limits``: they are read for every node.
        self._max_nodes = limits.max_nodes
        self._max_chars = limits.max_scalar_chars
        self._max_depth = limits.max_depth
        self._nodes = 0
        self._stack: list[_Frame] = []
        self._anchors: dict[str, _Anchor] = {}
        self._marks: dict[YamlPath, _Mark | None] = {}
        self._key_marks: dict[YamlPath, _Mark | None] = {}
        self._start: _Mark | None = None
        # Keyed by class *name*: when ``yaml`` is imported a second time (coverage.py and
        # module-reloading tools can cause this), libyaml keeps creating events of the
        # classes of the first import, which a lookup by class would not find.
        self._handlers: dict[str, Callable[[Any], None]] = {
            "ScalarEvent": self._on_scalar,
            "MappingStartEvent": self._on_mapping_start,
            "MappingEndEvent": self._on_collection_end,
            "SequenceStartEvent": self._on_sequence_start,
            "SequenceEndEvent": self._on_collection_end,
            "AliasEvent": self._on_alias,
            "DocumentStartEvent": self._on_document_start,
            "DocumentEndEvent": self._on_document_end,
            "StreamStartEvent": _ignore,
        }

    def read(self) -> None:
        """Consume the whole stream, or stop at the first fatal problem."""
        loader = _LOADER(self.text)
        try:
            self._consume(loader)
        except _FatalError:
            pass
        finally:
            loader.dispose()

    def _consume(self, loader: _EventSource) -> None:
        handlers = self._handlers
        get_event = loader.get_event
        event: yaml.Event | None = None
        while True:
            last = event
            try:
                event = get_event()
            except Exception as exc:  # noqa: BLE001  PyYAML must never leak a traceback
                self._parser_failed(exc, last)
            name = type(event).__name__
            if name == "StreamEndEvent" or event is None:
                return
            handlers[name](event)

    # -- diagnostics

    def _error(self, mark: _Mark | None, code: Code, message: str, hint: str | None) -> None:
        self.diagnostics.append(Diagnostic(_position(self.file, mark), "error", code, message, hint))
        if len(self.diagnostics) >= _MAX_DIAGNOSTICS:
            raise _FatalError

    def _fatal(self, mark: _Mark | None, code: Code, message: str, hint: str | None) -> NoReturn:
        self.diagnostics.append(Diagnostic(_position(self.file, mark), "error", code, message, hint))
        raise _FatalError

    def _parser_failed(self, exc: Exception, last: yaml.Event | None) -> NoReturn:
        if _is_marked_error(exc):
            self._syntax_error(exc, last)
        self._unexpected(exc, last)

    def _syntax_error(self, exc: yaml.MarkedYAMLError, last: yaml.Event | None) -> NoReturn:
        mark: _Mark | None = exc.problem_mark or exc.context_mark
        if mark is None and last is not None:
            mark = last.start_mark
        problem = exc.problem or exc.context or "the YAML is malformed"
        character = self._character_at(mark)
        if character == "\t" or "tab character" in problem:
            self._fatal(
                mark,
                Code.YAML_TAB,
                "a tab character is used for indentation; YAML allows only spaces",
                "indent with spaces",
            )
        if "maximum nesting depth" in problem:
            self._too_deep(mark, min(self._max_depth, _LIBYAML_MAX_NESTING))
        hint = _syntax_hint(problem)
        if character and "cannot start any token" in problem:
            # libyaml does not say which character; PyYAML does, in Python syntax.
            problem = f"found the character {character!r}, which cannot start a value"
        message = f"invalid YAML: {problem}"
        context = exc.context_mark
        if exc.context and context is not None and mark is not None and context.line < mark.line:
            # libyaml names what it was reading ("while scanning a quoted scalar"); where
            # that began is the useful part when it is on an earlier line.
            message += f" ({exc.context} that starts on line {context.line + 1})"
        self._fatal(mark, Code.YAML_SYNTAX, message, hint)

    def _unexpected(self, exc: Exception, last: yaml.Event | None) -> NoReturn:
        self._fatal(
            last.start_mark if last is not None else None,
            Code.YAML_SYNTAX,
            # PyYAML's texts span lines; a diagnostic is one line.
            f"the YAML could not be read after this point ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())})",
            _DEFAULT_SYNTAX_HINT,
        )

    def _character_at(self, mark: _Mark | None) -> str:
        if mark is None:
            return ""
        lines = self.text.splitlines()
        line = lines[mark.line] if mark.line < len(lines) else ""
        return line[mark.column : mark.column + 1]

    def _count(self, nodes: int, mark: _Mark | None) -> None:
        self._nodes += nodes
        if self._nodes > self._max_nodes:
            self._too_many_nodes(mark)

    def _too_many_nodes(self, mark: _Mark | None) -> NoReturn:
        self._fatal(
            mark,
            Code.YAML_TOO_MANY_NODES,
            f"the file holds more than {self._max_nodes:,} values once every alias is expanded",
            "use fewer aliases (*name), or split the policy into several files",
        )

    def _too_deep(self, mark: _Mark | None, levels: int) -> NoReturn:
        self._fatal(
            mark,
            Code.YAML_TOO_DEEP,
            f"the data is nested more than {levels} levels deep",
            "flatten the structure",
        )

    def _bad_tag(self, tag: str, mark: _Mark | None, node: str) -> None:
        if tag in _STANDARD_TAGS:
            message = f"the tag {_short_tag(tag)} cannot be used on {node}"
        else:
            message = f"the tag {_short_tag(tag)} is not supported; only {_ALLOWED_TAGS} are"
        self._error(mark, Code.YAML_TAG, message, "remove the tag")

    # -- documents

    def _on_document_start(self, event: yaml.DocumentStartEvent) -> None:
        self._anchors = {}  # anchors are scoped to their document
        self._marks = {}
        self._key_marks = {}
        self._start = event.start_mark
        self._stack = [_DocumentFrame(None, self._nodes, None)]

    def _on_document_end(self, _event: yaml.DocumentEndEvent) -> None:
        root = self._stack.pop()
        self.documents.append(
            YamlDocument(
                value=root.value,
                index=len(self.documents),
                start=_position(self.file, self._start),
                positions=_PositionMap(self.file, self._marks),
                key_positions=_PositionMap(self.file, self._key_marks),
            )
        )

    # -- nodes

    def _on_scalar(self, event: yaml.ScalarEvent) -> None:
        # The hottest code of the reader: one call per key and per value.
        mark = event.start_mark
        text = event.value
        self._nodes += 1
        if self._nodes > self._max_nodes or len(text) > self._max_chars:
            self._scalar_over_limits(text, mark)
        frame = self._stack[-1]
        value: object
        if type(frame) is _MappingFrame and frame.wants_key:
            tag = event.tag
            if tag is not None and tag not in _KEY_TAGS:
                self._bad_tag(tag, mark, "a key")
            self._take_key(frame, text, mark)
            value = text
        else:
            tag = event.tag
            if tag is not None:
                value = self._tagged(tag, text, mark)
            elif not event.implicit[0]:
                value = text  # quoted or block scalar: always text
            else:
                try:
                    value = resolve_plain(text)
                except _NumberTooLargeError:
                    value = self._number_too_large(text, mark)
            self._marks[frame.place(value)] = mark
        if event.anchor is not None:
            self._anchors[event.anchor] = _Anchor(value, 1, text)

    def _scalar_over_limits(self, text: str, mark: _Mark | None) -> None:
        if self._nodes > self._max_nodes:
            self._too_many_nodes(mark)
        self._error(
            mark,
            Code.FILE_TOO_LARGE,
            f"this value is {len(text):,} characters long; values may be at most "
            f"{self._max_chars:,} characters",
            "shorten the value, or split it",
        )

    def _take_key(self, frame: _MappingFrame, key: str, mark: _Mark | None) -> None:
        path = (*frame.path, key)
        if key in frame.entries:
            first = self._key_marks[path]
            self._error(
                mark,
                Code.YAML_DUPLICATE_KEY,
                f"the key {key!r} appears twice in the same mapping; it was first "
                f"defined on line {_position(self.file, first).line}",
                "remove one of the two entries, or rename one",
            )
        else:
            self._key_marks[path] = mark
        frame.key = key
        frame.wants_key = False

    def _tagged(self, tag: str, text: str, mark: _Mark | None) -> object:
        """Resolve a scalar that carries an explicit tag."""
        if tag in _TEXT_TAGS:
            return text
        expected = _TAGGED.get(tag)
        if expected is None:
            self._bad_tag(tag, mark, "a single value")
            return text
        try:
            value = resolve_plain(text)
        except _NumberTooLargeError:
            return self._number_too_large(text, mark)
        meaning, types = expected
        if type(value) not in types:
            self._error(
                mark,
                Code.YAML_TAG,
                f"the value {text!r} is tagged {_short_tag(tag)} but is not {meaning}",
                "remove the tag, or correct the value",
            )
            return text
        return float(cast("float", value)) if tag == _FLOAT else value

    def _number_too_large(self, text: str, mark: _Mark | None) -> str:
        self._error(
            mark,
            Code.FILE_TOO_LARGE,
            f"this number is too large: numbers may have at most {_MAX_INT_DIGITS} digits",
            "quote the value if it is meant as text",
        )
        return text

    def _on_mapping_start(self, event: yaml.MappingStartEvent) -> None:
        self._open(event, _MappingFrame(event.anchor, self._nodes), _MAP, "a mapping")

    def _on_sequence_start(self, event: yaml.SequenceStartEvent) -> None:
        self._open(event, _SequenceFrame(event.anchor, self._nodes), _SEQ, "a list")

    def _open(self, event: yaml.CollectionStartEvent, frame: _Frame, own_tag: str, node: str) -> None:
        mark = event.start_mark
        self._count(1, mark)
        parent = self._stack[-1]
        if type(parent) is _MappingFrame and parent.wants_key:
            self._complex_key(mark)
        if len(self._stack) > self._max_depth:
            self._too_deep(mark, self._max_depth)
        tag = event.tag
        if tag is not None and tag not in {"!", own_tag}:
            self._bad_tag(tag, mark, node)
        frame.path = parent.place(frame.value)
        self._marks[frame.path] = mark
        self._stack.append(frame)

    def _on_collection_end(self, _event: yaml.CollectionEndEvent) -> None:
        frame = self._stack.pop()
        if frame.anchor is not None:
            size = self._nodes - frame.nodes_before
            self._anchors[frame.anchor] = _Anchor(frame.value, size, None)

    def _complex_key(self, mark: _Mark | None) -> NoReturn:
        self._fatal(
            mark,
            Code.YAML_COMPLEX_KEY,
            "a list or mapping is used as a mapping key; keys must be single names",
            "use a plain name as the key",
        )

    def _on_alias(self, event: yaml.AliasEvent) -> None:
        mark = event.start_mark
        name = cast("str", event.anchor)
        anchor = self._anchors.get(name)
        if anchor is None:
            self._fatal(
                mark,
                Code.YAML_SYNTAX,
                f"the alias *{name} refers to no anchor: &{name} is not defined before it in this document",
                f"define the value with &{name} before using *{name}",
            )
        self._count(anchor.nodes, mark)
        frame = self._stack[-1]
        if type(frame) is _MappingFrame and frame.wants_key:
            if anchor.text is None:
                self._complex_key(mark)
            self._take_key(frame, anchor.text, mark)
            return
        self._expand(frame, anchor.value, mark)

    def _expand(self, frame: _Frame, value: object, mark: _Mark | None) -> None:
        """Place a deep copy of an anchored value, every part positioned at the alias.

        The copy is made with an explicit work list rather than recursion, and the
        node budget has already been charged for all of it.
        """
        copy = _shallow_copy(value)
        path = frame.place(copy)
        self._marks[path] = mark
        work: list[tuple[dict[str, object] | list[object], YamlPath, int]] = []
        if isinstance(copy, dict | list):
            work.append((copy, path, len(self._stack)))
        while work:
            node, where, depth = work.pop()
            if depth > self._max_depth:
                self._too_deep(mark, self._max_depth)
            if isinstance(node, dict):
                for key, child in node.items():
                    child_path = (*where, key)
                    self._key_marks[child_path] = mark
                    node[key] = self._copy_child(child, child_path, depth, work, mark)
            else:
                for index, child in enumerate(node):
                    node[index] = self._copy_child(child, (*where, index), depth, work, mark)

    def _copy_child(
        self,
        child: object,
        path: YamlPath,
        depth: int,
        work: list[tuple[dict[str, object] | list[object], YamlPath, int]],
        mark: _Mark | None,
    ) -> object:
        self._marks[path] = mark
        copy = _shallow_copy(child)
        if isinstance(copy, dict | list):
            work.append((copy, path, depth + 1))
        return copy


def _is_marked_error(exc: Exception) -> TypeGuard[yaml.MarkedYAMLError]:
    """Tell whether PyYAML raised one of its positioned errors (scanner, parser, ...).

    Checked by class name for the same reason the event handlers are keyed by name.
    """
    return any(cls.__name__ == "MarkedYAMLError" for cls in type(exc).__mro__)


def _shallow_copy(value: object) -> object:
    """Copy a list or mapping one level deep; scalars are immutable and are shared."""
    if isinstance(value, dict):
        return dict(cast("dict[str, object]", value))
    if isinstance(value, list):
        return list(cast("list[object]", value))
    return value


def _ignore(_event: yaml.Event) -> None:
    """Handle an event that carries nothing the reader needs."""


# ---------------------------------------------------------------- entry point

_DEFAULT_LIMITS: Final = YamlLimits()


def read_documents(
    data: bytes, file: str, limits: YamlLimits = _DEFAULT_LIMITS
) -> tuple[list[YamlDocument], list[Diagnostic]]:
    """Read every YAML document of one policy file.

    Reading is all or nothing per file: when anything is wrong, no document is
    returned, only diagnostics (every one that could be gathered before reading had
    to stop). An empty file, or one holding only comments, has no documents and no
    diagnostics; whether that is acceptable is the caller's decision.

    Args:
        data: The file's bytes, as read from disk.
        file: The file's name as diagnostics should show it.
        limits: Bounds on size, depth, node count and value length.

    Returns:
        The documents in file order and an empty list, or an empty list and the error
        diagnostics (codes ``TP102`` to ``TP111``), in file order.
    """
    if len(data) > limits.max_file_bytes:
        return [], [
            Diagnostic(
                Position(file),
                "error",
                Code.FILE_TOO_LARGE,
                f"the file is {len(data):,} bytes; policy files may be at most "
                f"{limits.max_file_bytes:,} bytes",
                "split the policy into several files",
            )
        ]
    text = _decode(data, file)
    if isinstance(text, Diagnostic):
        return [], [text]
    problem = _check_characters(text, file)
    if problem is not None:
        return [], [problem]
    reader = _Reader(file, text, limits)
    reader.read()
    if reader.diagnostics:
        return [], reader.diagnostics
    return reader.documents, []
