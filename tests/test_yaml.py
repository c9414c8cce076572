"""Tests of the positioned, hostile-input-safe YAML reader (``engine._yaml``)."""

from __future__ import annotations

import importlib.util
import math
import os
import re
from typing import TYPE_CHECKING

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import json_values, yaml_like_text
from tierpolicy.engine import _yaml
from tierpolicy.engine._diagnostics import Code, Diagnostic, Position
from tierpolicy.engine._yaml import YamlDocument, YamlLimits, read_documents

if TYPE_CHECKING:
    from pathlib import Path
    from types import ModuleType

FILE = "policies/tiers.yaml"


def at(line: int, column: int) -> Position:
    """Return a position in the test file."""
    return Position(FILE, line, column)


def read(source: str | bytes, **limits: int) -> tuple[list[YamlDocument], list[Diagnostic]]:
    """Read ``source`` (text is encoded as UTF-8) with optional limit overrides."""
    data = source.encode() if isinstance(source, str) else source
    return read_documents(data, FILE, YamlLimits(**limits))


def only_document(source: str | bytes, **limits: int) -> YamlDocument:
    """Read a file that must hold exactly one document and no problem."""
    documents, diagnostics = read(source, **limits)
    assert diagnostics == []
    assert len(documents) == 1
    return documents[0]


def only_value(source: str | bytes) -> object:
    """Read a one-document file and return its value."""
    return only_document(source).value


def value_of(source: str) -> object:
    """Read ``v: <source>`` and return the value of ``v``."""
    value = only_value(f"v: {source}\n")
    assert isinstance(value, dict)
    return value["v"]


def only_error(source: str | bytes, **limits: int) -> Diagnostic:
    """Read a file that must fail with exactly one diagnostic, and return it."""
    documents, diagnostics = read(source, **limits)
    assert documents == []
    assert len(diagnostics) == 1, [d.format() for d in diagnostics]
    assert diagnostics[0].severity == "error"
    return diagnostics[0]


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with libyaml's parser and again with PyYAML's pure-Python one."""
    if request.param == "python":
        monkeypatch.setattr(_yaml, "_LOADER", yaml.SafeLoader)
    elif not yaml.__with_libyaml__:  # pragma: no cover - depends on the PyYAML build
        pytest.skip("PyYAML was built without libyaml")
    return str(request.param)


# ---------------------------------------------------------------- positions


@pytest.mark.usefixtures("parser")
def test_positions_of_nested_keys_values_and_flow_items() -> None:
    """Every key and value of nested mappings and flow lists has its 1-based position."""
    document = only_document(
        "tiers:\n  gold:\n    rank: 3\n    features: [api, bulk]\n",
    )
    assert document.value == {"tiers": {"gold": {"rank": 3, "features": ["api", "bulk"]}}}
    assert document.positions[()] == at(1, 1)
    assert document.key_positions[("tiers",)] == at(1, 1)
    assert document.positions[("tiers",)] == at(2, 3)
    assert document.key_positions[("tiers", "gold")] == at(2, 3)
    assert document.positions[("tiers", "gold")] == at(3, 5)
    assert document.key_positions[("tiers", "gold", "rank")] == at(3, 5)
    assert document.positions[("tiers", "gold", "rank")] == at(3, 11)
    assert document.key_positions[("tiers", "gold", "features")] == at(4, 5)
    assert document.positions[("tiers", "gold", "features")] == at(4, 15)
    assert document.positions[("tiers", "gold", "features", 0)] == at(4, 16)
    assert document.positions[("tiers", "gold", "features", 1)] == at(4, 21)


@pytest.mark.usefixtures("parser")
def test_positions_of_block_list_items() -> None:
    """Block list items and the entries of mappings inside them are positioned."""
    document = only_document(
        "limits:\n  - name: listings\n    value: 100\n  - name: api\n",
    )
    assert document.value == {"limits": [{"name": "listings", "value": 100}, {"name": "api"}]}
    assert document.positions[("limits",)] == at(2, 3)
    assert document.positions[("limits", 0)] == at(2, 5)
    assert document.key_positions[("limits", 0, "name")] == at(2, 5)
    assert document.positions[("limits", 0, "name")] == at(2, 11)
    assert document.key_positions[("limits", 0, "value")] == at(3, 5)
    assert document.positions[("limits", 0, "value")] == at(3, 12)
    assert document.key_positions[("limits", 1, "name")] == at(4, 5)
    assert ("limits", 0) not in document.key_positions


@pytest.mark.usefixtures("parser")
def test_position_of_falls_back_to_the_longest_existing_prefix() -> None:
    """Paths to missing data point at the nearest ancestor that exists."""
    document = only_document("tiers:\n  gold:\n    rank: 3\n  list: [a]\n")
    assert document.position_of(["tiers", "gold", "rank"]) == at(3, 11)
    assert document.position_of(("tiers", "gold", "missing", "deeper")) == at(3, 5)
    assert document.position_of(("tiers", "gold", "rank", "below_a_scalar")) == at(3, 11)
    assert document.position_of(("tiers", "list", 5)) == at(4, 9)
    assert document.position_of(("nowhere",)) == at(1, 1)
    assert document.position_of(()) == at(1, 1)


@pytest.mark.usefixtures("parser")
def test_key_position_of_prefers_the_key_and_falls_back_like_position_of() -> None:
    """``key_position_of`` gives the key, else the nearest ancestor's key or value."""
    document = only_document("tiers:\n  gold:\n    rank: 3\n  list: [a]\n")
    assert document.key_position_of(("tiers", "gold", "rank")) == at(3, 5)
    assert document.key_position_of(("tiers", "gold", "missing")) == at(2, 3)
    assert document.key_position_of(("tiers", "list", 0)) == at(4, 10)
    assert document.key_position_of(("tiers", "list", 0, "x")) == at(4, 10)
    assert document.key_position_of(("nowhere",)) == at(1, 1)


def test_position_maps_are_read_only_mappings() -> None:
    """The position maps behave as mappings: lookup, membership, length, iteration."""
    document = only_document("a: [x]\n")
    assert dict(document.positions) == {(): at(1, 1), ("a",): at(1, 4), ("a", 0): at(1, 5)}
    assert list(document.key_positions) == [("a",)]
    assert len(document.key_positions) == 1
    assert ("a",) in document.positions
    assert ("a", 0) not in document.key_positions
    assert document.positions.get(("b",)) is None
    assert repr(document.positions) == f"<3 positions in {FILE}>"


def test_a_document_without_positions_falls_back_to_its_start() -> None:
    """``position_of`` returns the document start when not even the root is known."""
    document = YamlDocument(None, 0, at(4, 1), {}, {})
    assert document.position_of(("a",)) == at(4, 1)
    assert document.key_position_of(("a",)) == at(4, 1)


@pytest.mark.usefixtures("parser")
def test_multi_document_files_have_indices_and_start_positions() -> None:
    """Each document has its 0-based index, its start, and positions in file lines."""
    documents, diagnostics = read("# policies\nkind: A\n---\nkind: B\n--- \n- 1\n...\n")
    assert diagnostics == []
    assert [d.value for d in documents] == [{"kind": "A"}, {"kind": "B"}, [1]]
    assert [d.index for d in documents] == [0, 1, 2]
    assert [d.start for d in documents] == [at(2, 1), at(3, 1), at(5, 1)]
    assert documents[1].positions[("kind",)] == at(4, 7)
    assert documents[2].positions[(0,)] == at(6, 3)


@pytest.mark.usefixtures("parser")
def test_empty_documents_have_value_none() -> None:
    """A document that is just ``---`` holds ``None``."""
    documents, diagnostics = read("---\n---\na: 1\n")
    assert diagnostics == []
    assert [d.value for d in documents] == [None, {"a": 1}]


@pytest.mark.usefixtures("parser")
@pytest.mark.parametrize("source", ["", "# only a comment\n", "\n\n  \n", "# a\n\n# b"])
def test_files_without_documents_read_as_nothing(source: str) -> None:
    """An empty file, or one with only comments or blanks, has no documents and no errors."""
    assert read(source) == ([], [])


@pytest.mark.usefixtures("parser")
def test_columns_count_characters_and_crlf_breaks_lines() -> None:
    """Columns count characters, not bytes, and CRLF ends a line."""
    document = only_document("name: é日\r\nx: [é, b]\r\n")
    assert document.value == {"name": "é日", "x": ["é", "b"]}
    assert document.positions[("x", 1)] == at(2, 8)


@pytest.mark.usefixtures("parser")
def test_a_utf8_byte_order_mark_is_accepted_and_not_counted() -> None:
    """A UTF-8 BOM is skipped; columns on the first line are unaffected."""
    document = only_document(b"\xef\xbb\xbfa: [x]\n")
    assert document.value == {"a": ["x"]}
    assert document.positions[("a", 0)] == at(1, 5)


@pytest.mark.usefixtures("parser")
def test_directives_are_accepted() -> None:
    """``%YAML`` and ``%TAG`` directives are fine; a %TAG handle for the standard prefix works."""
    source = "%YAML 1.2\n%TAG !std! tag:yaml.org,2002:\n---\na: !std!str 12\n"
    document = only_document(source)
    assert document.value == {"a": "12"}
    assert document.start == at(1, 1)  # a document starts at its directives


# ---------------------------------------------------------------- YAML 1.2 core schema


@pytest.mark.parametrize(
    ("plain", "expected"),
    [
        # Norway problem: YAML 1.1 booleans are text in the core schema.
        ("NO", "NO"),
        ("no", "no"),
        ("yes", "yes"),
        ("Yes", "Yes"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("n", "n"),
        # Other YAML 1.1 implicit types that are text now.
        ("2026-01-01", "2026-01-01"),
        ("2026-01-01T10:00:00Z", "2026-01-01T10:00:00Z"),
        ("1_000", "1_000"),
        ("12:30", "12:30"),
        ("0b101", "0b101"),
        ("-0x1F", "-0x1F"),
        ("0o9", "0o9"),
        ("tRue", "tRue"),
        ("nulL", "nulL"),
        ("inf", "inf"),
        ("-nan", "-nan"),
        ("1e", "1e"),
        ("+", "+"),
        ("..5", "..5"),
        ("١٢", "١٢"),  # Arabic-Indic digits are not [0-9]
        # Booleans and null.
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("FALSE", False),
        ("null", None),
        ("Null", None),
        ("NULL", None),
        ("~", None),
        ("", None),
        # Integers.
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("+12", 12),
        ("017", 17),
        ("0o17", 15),
        ("0x1F", 31),
        ("0xff", 255),
        # Floats.
        ("1.5", 1.5),
        ("-2.", -2.0),
        (".5", 0.5),
        ("+.5", 0.5),
        ("1e3", 1000.0),
        ("1E-2", 0.01),
        ("6.02e+23", 6.02e23),
        (".inf", math.inf),
        ("+.Inf", math.inf),
        ("-.INF", -math.inf),
    ],
)
def test_plain_scalars_resolve_by_the_yaml_1_2_core_schema(plain: str, expected: object) -> None:
    """Plain scalars follow the YAML 1.2 core schema; anything else stays text."""
    value = value_of(plain)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("plain", [".nan", ".NaN", ".NAN"])
def test_not_a_number_resolves_to_nan(plain: str) -> None:
    """``.nan`` in its three spellings is a float NaN."""
    value = value_of(plain)
    assert isinstance(value, float)
    assert math.isnan(value)


@pytest.mark.parametrize(
    "source",
    ["'true'", '"12"', "'null'", '""', "'0x1F'", "|\n  12\n", ">\n  no\n"],
)
def test_quoted_and_block_scalars_are_always_text(source: str) -> None:
    """Quoting, or a block scalar, keeps a value as text whatever it looks like."""
    value = only_value(f"v: {source}")
    assert isinstance(value, dict)
    assert isinstance(value["v"], str)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("!!str 123", "123"),
        ("!!str true", "true"),
        ('!!int "12"', 12),
        ("!!int 0x10", 16),
        ("!!float 3", 3.0),
        ('!!float "2.5"', 2.5),
        ("!!float .inf", math.inf),
        ('!!bool "true"', True),
        ("!!null ''", None),
        ("!!null ~", None),
        ("!!map {a: 1}", {"a": 1}),
        ("!!seq [1]", [1]),
        ("! 12", "12"),
        ("! [1]", [1]),
        ("!<tag:yaml.org,2002:str> 5", "5"),
    ],
)
def test_explicit_standard_tags_are_honoured(source: str, expected: object) -> None:
    """The standard tags convert (or keep) the value; ``!`` means plain text."""
    value = value_of(source)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("!!int abc", "the value 'abc' is tagged !!int but is not a whole number"),
        ("!!int 1.5", "the value '1.5' is tagged !!int but is not a whole number"),
        ("!!bool yes", "the value 'yes' is tagged !!bool but is not true or false"),
        ("!!float x", "the value 'x' is tagged !!float but is not a number"),
        ("!!null 0", "the value '0' is tagged !!null but is not null"),
        ("!!map x", "the tag !!map cannot be used on a single value"),
        ("!!seq {a: 1}", "the tag !!seq cannot be used on a mapping"),
        ("!!str [1]", "the tag !!str cannot be used on a list"),
    ],
)
def test_standard_tags_that_do_not_fit_the_value_are_errors(source: str, message: str) -> None:
    """A standard tag on a value it does not describe is a YAML_TAG error at the value."""
    error = only_error(f"v: {source}\n")
    assert error.code == Code.YAML_TAG
    assert error.position == at(1, 4)
    assert error.message == message


@pytest.mark.parametrize(
    ("source", "keys"),
    [
        ("1: a\ntrue: b\nnull: c\n~: d\n1.5: e\n'q': f\n", ["1", "true", "null", "~", "1.5", "q"]),
        ("!!int 7: a\n!!str 8: b\n", ["7", "8"]),
        ("? \n: empty\n", [""]),
    ],
)
def test_keys_are_kept_as_the_text_written(source: str, keys: list[str]) -> None:
    """Keys are names: non-string scalar keys keep their source text."""
    value = only_value(source)
    assert isinstance(value, dict)
    assert list(value) == keys


# ---------------------------------------------------------------- aliases


@pytest.mark.usefixtures("parser")
def test_aliases_expand_to_independent_copies_positioned_at_the_alias() -> None:
    """An alias repeats the anchored node as a copy; its positions are the alias site."""
    document = only_document("base: &b {a: [1, {c: 2}]}\nuse: *b\nname: &n x\nagain: *n\n")
    value = document.value
    assert value == {
        "base": {"a": [1, {"c": 2}]},
        "use": {"a": [1, {"c": 2}]},
        "name": "x",
        "again": "x",
    }
    assert isinstance(value, dict)
    assert value["use"] is not value["base"]
    assert value["use"]["a"] is not value["base"]["a"]
    assert value["use"]["a"][1] is not value["base"]["a"][1]
    assert document.positions[("base", "a", 1, "c")] == at(1, 22)
    for path in [("use",), ("use", "a"), ("use", "a", 0), ("use", "a", 1), ("use", "a", 1, "c")]:
        assert document.positions[path] == at(2, 6)
    assert document.key_positions[("use",)] == at(2, 1)
    assert document.key_positions[("use", "a", 1, "c")] == at(2, 6)
    assert document.positions[("again",)] == at(4, 8)


def test_an_alias_of_a_scalar_can_be_a_key() -> None:
    """An alias to an anchored scalar may be used as a key, by its text."""
    assert only_value("- &k 10: a\n- *k : b\n") == [{"10": "a"}, {"10": "b"}]


def test_an_anchor_redefined_later_is_used_from_then_on() -> None:
    """Reusing an anchor name is allowed; aliases refer to the latest definition."""
    assert only_value("a: &x 1\nb: *x\nc: &x 2\nd: *x\n") == {"a": 1, "b": 1, "c": 2, "d": 2}


@pytest.mark.usefixtures("parser")
@pytest.mark.parametrize(
    ("source", "position"),
    [
        ("a: *nowhere\n", at(1, 4)),
        ("a: &x [1, *x]\n", at(1, 11)),
        ("a: &x 1\n---\nb: *x\n", at(3, 4)),
    ],
)
def test_an_alias_to_an_unknown_anchor_is_a_syntax_error(source: str, position: Position) -> None:
    """Aliases must follow their anchor in the same document (no recursion, no sharing)."""
    error = only_error(source)
    assert error.code == Code.YAML_SYNTAX
    assert error.position == position
    assert "refers to no anchor" in error.message


# ---------------------------------------------------------------- file-level problems


def test_a_file_over_the_size_limit_is_rejected_before_parsing() -> None:
    """A 2 MiB file is FILE_TOO_LARGE at 1:1, naming its size and the limit."""
    error = only_error(b"a: " + b"x" * (2 * 1024 * 1024))
    assert error.code == Code.FILE_TOO_LARGE
    assert error.position == at(1, 1)
    assert error.message == ("the file is 2,097,155 bytes; policy files may be at most 1,048,576 bytes")


def test_the_size_limit_is_inclusive() -> None:
    """A file of exactly ``max_file_bytes`` is read; one byte more is not."""
    assert only_document("a: 12345\n", max_file_bytes=9).value == {"a": 12345}
    assert only_error("a: 123456\n", max_file_bytes=9).code == Code.FILE_TOO_LARGE


@pytest.mark.parametrize(
    ("data", "position", "fragment"),
    [
        (b"a: 1\nb: 2\nc: ab\xffcd\n", at(3, 6), "byte 0xFF here is an invalid start byte"),
        (b"a: 1\nb: 2\nc: \xc3\xa9\xffcd\n", at(3, 5), "byte 0xFF here is an invalid start"),
        (b"a: 1\r\nb: \xc3(\n", at(2, 4), "byte 0xC3 here is an invalid continuation byte"),
        (b"a: \xe2\x82", at(1, 4), "byte 0xE2 here is an unexpected end of data"),
        (b"\xef\xbb\xbfa: \xed\xa0\x80\n", at(1, 4), "byte 0xED"),  # encoded surrogate
    ],
)
def test_invalid_utf8_is_reported_at_the_first_bad_byte(
    data: bytes, position: Position, fragment: str
) -> None:
    """Bytes that are not UTF-8 give NOT_UTF8 at the line and character column."""
    error = only_error(data)
    assert error.code == Code.NOT_UTF8
    assert error.position == position
    assert fragment in error.message
    assert error.hint == "save the file with UTF-8 encoding"


@pytest.mark.parametrize(
    ("encoding", "name"),
    [
        ("utf-16-le", "UTF-16"),
        ("utf-16-be", "UTF-16"),
        ("utf-32-le", "UTF-32"),
        ("utf-32-be", "UTF-32"),
    ],
)
def test_utf16_and_utf32_with_a_byte_order_mark_are_rejected(encoding: str, name: str) -> None:
    """UTF-16 and UTF-32 files (with a BOM) are NOT_UTF8 at 1:1, naming the encoding."""
    error = only_error("\ufeffa: 1\n".encode(encoding))
    assert error.code == Code.NOT_UTF8
    assert error.position == at(1, 1)
    assert error.message == (
        f"the file is {name} text (it starts with a {name} byte order mark); policy files must be UTF-8"
    )


def test_utf16_without_a_byte_order_mark_is_rejected_at_the_first_nul() -> None:
    """UTF-16 without a BOM decodes as UTF-8 but its NUL bytes give NOT_UTF8."""
    error = only_error("a: 1\n".encode("utf-16-le"))
    assert error.code == Code.NOT_UTF8
    assert error.position == at(1, 2)
    assert "NUL" in error.message


def test_control_characters_are_rejected_with_their_code_point() -> None:
    """A control character YAML forbids is a YAML_SYNTAX error naming it."""
    error = only_error("a: 1\nb: x\x07y\n")
    assert error.code == Code.YAML_SYNTAX
    assert error.position == at(2, 5)
    assert "U+0007" in error.message


# ---------------------------------------------------------------- syntax errors


@pytest.mark.usefixtures("parser")
def test_mapping_values_not_allowed_keeps_the_problem_and_adds_a_hint() -> None:
    """``a: b: c`` is YAML_SYNTAX at the second colon with an indentation/quoting hint."""
    error = only_error("a: 1\nb: c: d\n")
    assert error.code == Code.YAML_SYNTAX
    assert error.position == at(2, 5)
    assert error.message.startswith("invalid YAML: mapping values are not allowed")
    assert error.hint == "check the indentation, or quote the value"


@pytest.mark.usefixtures("parser")
def test_an_unclosed_quote_names_where_it_started() -> None:
    """An unterminated quoted value is reported at the end, naming the line it began on."""
    error = only_error('a: 1\nk: "abc\n\n')
    assert error.code == Code.YAML_SYNTAX
    assert error.position == at(4, 1)
    assert error.message == (
        "invalid YAML: found unexpected end of stream (while scanning a quoted scalar that starts on line 2)"
    )
    assert error.hint == "close the quote or bracket that is still open"


@pytest.mark.usefixtures("parser")
def test_an_unclosed_flow_list_is_a_syntax_error() -> None:
    """A flow list missing its ``]`` gets the list hint."""
    error = only_error("k: [a, b\n")
    assert error.code == Code.YAML_SYNTAX
    assert error.position == at(2, 1)
    assert error.hint == "separate list items with ',' and close the list with ']'"


@pytest.mark.usefixtures("parser")
def test_a_reserved_character_is_named() -> None:
    """A value starting with ``@`` is YAML_SYNTAX naming the character."""
    error = only_error("x: @foo\n")
    assert error.code == Code.YAML_SYNTAX
    assert error.position == at(1, 4)
    assert error.message == "invalid YAML: found the character '@', which cannot start a value"
    assert error.hint == "quote the value: it starts with a character YAML reserves"


@pytest.mark.usefixtures("parser")
def test_an_unsupported_yaml_version_is_a_syntax_error() -> None:
    """``%YAML 2.0`` is rejected with the default hint."""
    error = only_error("%YAML 2.0\n---\na: 1\n")
    assert error.code == Code.YAML_SYNTAX
    assert error.position == at(1, 1)
    assert error.hint == "write '%YAML 1.2', or remove the %YAML line"


@pytest.mark.usefixtures("parser")
@pytest.mark.parametrize(
    ("source", "position"),
    [
        ("a:\n\tb: 1\n", at(2, 1)),
        ("a:\n  b: 1\n\tc: 2\n", at(3, 1)),
        ("a:\n  \tb: 1\n", at(2, 3)),
        ("- a\n-\tb\n- \tc\n", at(2, 2)),
    ],
)
def test_tabs_used_for_indentation_are_yaml_tab(source: str, position: Position) -> None:
    """A tab in indentation is YAML_TAB at the tab, with the hint to indent with spaces."""
    error = only_error(source)
    assert error.code == Code.YAML_TAB
    assert error.position == position
    assert error.hint == "indent with spaces"


def test_a_tab_inside_a_block_scalar_indentation_is_yaml_tab() -> None:
    """A tab where a block scalar expects indentation spaces is YAML_TAB too."""
    error = only_error("a: |\n  x\n\t y\n")
    assert error.code == Code.YAML_TAB
    assert error.position == at(3, 1)


def test_tabs_that_only_separate_are_fine() -> None:
    """A tab after a key's colon is separation, not indentation, and is allowed."""
    assert only_value("a:\tb\n") == {"a": "b"}


# ---------------------------------------------------------------- duplicate keys


@pytest.mark.usefixtures("parser")
def test_duplicate_keys_are_reported_at_every_level() -> None:
    """Each repeated key is YAML_DUPLICATE_KEY at the repeat, naming the first line."""
    source = (
        "tiers:\n  gold:\n    rank: 3\n    rank: 4\n  silver: {a: 1, a: 2}\nlimits:\n  gold: 1\ntiers: x\n"
    )
    documents, diagnostics = read(source)
    assert documents == []
    assert [(d.code, d.position) for d in diagnostics] == [
        (Code.YAML_DUPLICATE_KEY, at(4, 5)),
        (Code.YAML_DUPLICATE_KEY, at(5, 18)),
        (Code.YAML_DUPLICATE_KEY, at(8, 1)),
    ]
    assert diagnostics[0].message == (
        "the key 'rank' appears twice in the same mapping; it was first defined on line 3"
    )
    assert diagnostics[2].message.endswith("first defined on line 1")


def test_keys_that_differ_only_in_spelling_of_the_same_text_are_duplicates() -> None:
    """``1:`` and ``"1":`` are the same name, so the second is a duplicate."""
    error = only_error('1: a\n"1": b\n')
    assert error.code == Code.YAML_DUPLICATE_KEY
    assert error.position == at(2, 1)


def test_a_duplicate_key_made_by_an_alias_is_reported() -> None:
    """An alias used as a key counts like the text it stands for."""
    error = only_error("&k a: 1\n*k : 2\n")
    assert error.code == Code.YAML_DUPLICATE_KEY
    assert error.position == at(2, 1)


def test_one_bad_document_means_no_documents_at_all() -> None:
    """Reading is all or nothing per file: a later bad document drops the good ones."""
    documents, diagnostics = read("a: 1\n---\nb: 1\nb: 2\n")
    assert documents == []
    assert [d.code for d in diagnostics] == [Code.YAML_DUPLICATE_KEY]


def test_diagnostics_stop_after_one_hundred() -> None:
    """A file repeating one key endlessly yields at most 100 diagnostics."""
    documents, diagnostics = read("a: 1\n" * 500)
    assert documents == []
    assert len(diagnostics) == 100
    assert diagnostics[-1].position == at(101, 1)


# ---------------------------------------------------------------- tags


def test_python_object_tags_are_rejected_and_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``!!python/object/apply:os.system`` is YAML_TAG, and no command runs."""
    marker = tmp_path / "ran"
    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *args: calls.append(args))
    error = only_error(f'run: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert error.code == Code.YAML_TAG
    assert error.position == at(1, 6)
    assert error.message.startswith("the tag !!python/object/apply:os.system is not supported")
    assert error.hint == "remove the tag"
    assert calls == []
    assert not marker.exists()


@pytest.mark.parametrize(
    ("source", "tag", "position"),
    [
        ("v: !custom x\n", "!custom", at(1, 4)),
        ("v: !!binary aGVsbG8=\n", "!!binary", at(1, 4)),
        ("v: !!set {a, b}\n", "!!set", at(1, 4)),
        ("v: !!omap [a: 1]\n", "!!omap", at(1, 4)),
        ("v: !!timestamp 2026-01-01\n", "!!timestamp", at(1, 4)),
        ("v: !!python/name:os.system ''\n", "!!python/name:os.system", at(1, 4)),
        ("!custom k: 1\n", "!custom", at(1, 1)),
        ("? !!binary aGk=\n: 1\n", "!!binary", at(1, 3)),
        ("%TAG !e! tag:example.com,2000:\n---\nv: !e!thing x\n", "tag:example.com,2000:thing", at(3, 4)),
    ],
)
def test_non_standard_tags_are_rejected(source: str, tag: str, position: Position) -> None:
    """Any tag besides the seven standard ones is YAML_TAG naming it, on keys too."""
    error = only_error(source)
    assert error.code == Code.YAML_TAG
    assert error.position == position
    assert error.message == (
        f"the tag {tag} is not supported; only !!str, !!int, !!float, !!bool, !!null, !!map and !!seq are"
    )


def test_a_collection_tag_on_a_key_is_rejected() -> None:
    """``!!map`` on a scalar key is YAML_TAG."""
    error = only_error("!!map k: 1\n")
    assert error.code == Code.YAML_TAG
    assert error.message == "the tag !!map cannot be used on a key"


def test_several_bad_tags_are_all_reported() -> None:
    """Tag problems do not stop reading, so every one is reported."""
    documents, diagnostics = read("a: !x 1\nb: !y 2\n")
    assert documents == []
    assert [(d.code, d.position) for d in diagnostics] == [
        (Code.YAML_TAG, at(1, 4)),
        (Code.YAML_TAG, at(2, 4)),
    ]


# ---------------------------------------------------------------- keys that are not names


@pytest.mark.parametrize(
    ("source", "position"),
    [
        ("? [a, b]\n: 1\n", at(1, 3)),
        ("[a]: 1\n", at(1, 1)),
        ("{a: 1}: x\n", at(1, 1)),
        ("base: &b [1]\nm: {*b : 1}\n", at(2, 5)),
    ],
)
def test_collections_as_keys_are_rejected(source: str, position: Position) -> None:
    """A list or mapping (or an alias to one) used as a key is YAML_COMPLEX_KEY."""
    error = only_error(source)
    assert error.code == Code.YAML_COMPLEX_KEY
    assert error.position == position


# ---------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("parser", "column"),
    [("libyaml", 1001), ("python", 65)],
    indirect=["parser"],
)
def test_ten_thousand_nested_flow_lists_are_too_deep(parser: str, column: int) -> None:
    """``[[[[...`` 10,000 deep is YAML_TOO_DEEP, without RecursionError.

    libyaml stops by itself at 1,000 levels while scanning ahead; the pure-Python
    parser lets the reader stop at level 65.
    """
    assert parser in {"libyaml", "python"}
    error = only_error("[" * 10_000 + "]" * 10_000)
    assert error.code == Code.YAML_TOO_DEEP
    assert error.position == at(1, column)
    assert error.message == "the data is nested more than 64 levels deep"
    assert error.hint == "flatten the structure"


@pytest.mark.usefixtures("parser")
def test_ten_thousand_nested_flow_mappings_are_too_deep() -> None:
    """``{a: {a: ...}}`` 10,000 deep is YAML_TOO_DEEP at the 65th mapping."""
    error = only_error("{a: " * 10_000 + "}" * 10_000)
    assert error.code == Code.YAML_TOO_DEEP
    assert error.position == at(1, 257)


@pytest.mark.usefixtures("parser")
def test_block_nesting_is_limited_and_the_limit_is_inclusive() -> None:
    """64 nested block mappings are read; the 65th level is YAML_TOO_DEEP."""

    def nested(levels: int) -> str:
        lines = ["  " * level + "a:" for level in range(levels)]
        return "\n".join(lines) + " 1\n"

    assert only_document(nested(64)).value is not None
    error = only_error(nested(65))
    assert error.code == Code.YAML_TOO_DEEP
    assert error.position == at(65, 129)


def test_a_smaller_depth_limit_counts_the_root_as_level_one() -> None:
    """With ``max_depth=3``, ``[[[1]]]`` is read and ``[[[[1]]]]`` is not."""
    assert only_document("[[[1]]]", max_depth=3).value == [[[1]]]
    error = only_error("[[[[1]]]]", max_depth=3)
    assert error.code == Code.YAML_TOO_DEEP
    assert error.position == at(1, 4)
    assert error.message == "the data is nested more than 3 levels deep"


def test_an_alias_expanded_below_the_depth_limit_is_too_deep() -> None:
    """Depth counts the expansion of an alias where it is used."""
    error = only_error("a: &x [[1]]\nb: [[*x]]\n", max_depth=4)
    assert error.code == Code.YAML_TOO_DEEP
    assert error.position == at(2, 6)


@pytest.mark.usefixtures("parser")
def test_a_billion_laughs_alias_bomb_is_stopped_by_the_node_budget() -> None:
    """Ten levels of ten aliases is YAML_TOO_MANY_NODES at the alias crossing the budget."""
    lines = ["a0: &a0 lol"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    error = only_error("\n".join(lines) + "\n")
    assert error.code == Code.YAML_TOO_MANY_NODES
    # a0..a4 hold 12,345 nodes with their five keys and a5's key and list start 12,352;
    # each *a4 adds 11,111, so the 8th on line 6 (column 10 + 7 * 5) crosses 100,000.
    assert error.position == at(6, 45)
    assert error.message == ("the file holds more than 100,000 values once every alias is expanded")


def test_the_node_budget_counts_keys_values_and_alias_copies() -> None:
    """Every key, value, collection and alias-copied node counts toward ``max_nodes``."""
    assert only_document("[1, 2, 3]", max_nodes=4).value == [1, 2, 3]
    assert only_error("[1, 2, 3]", max_nodes=3).position == at(1, 8)
    source = "a: &x [1, 2]\nb: *x\n"  # 1 + (1 + 3) + (1 + 3) nodes
    assert only_document(source, max_nodes=9).value == {"a": [1, 2], "b": [1, 2]}
    error = only_error(source, max_nodes=8)
    assert error.code == Code.YAML_TOO_MANY_NODES
    assert error.position == at(2, 4)


def test_the_node_budget_spans_all_documents_of_a_file() -> None:
    """The budget is per file, so many small documents add up."""
    error = only_error("a: 1\n---\nb: 2\n", max_nodes=5)
    assert error.code == Code.YAML_TOO_MANY_NODES
    assert error.position == at(3, 4)


def test_values_and_keys_longer_than_the_limit_are_too_large() -> None:
    """A key or value over ``max_scalar_chars`` is FILE_TOO_LARGE at it."""
    documents, diagnostics = read("abcdef: abc\nk: abcdef\nok: abcde\n", max_scalar_chars=5)
    assert documents == []
    assert [(d.code, d.position) for d in diagnostics] == [
        (Code.FILE_TOO_LARGE, at(1, 1)),
        (Code.FILE_TOO_LARGE, at(2, 4)),
    ]
    assert diagnostics[1].message == ("this value is 6 characters long; values may be at most 5 characters")


@pytest.mark.parametrize(
    "source",
    [
        "9" * 641,
        "-" + "9" * 640,
        "0x" + "f" * 600,
        "0o" + "7" * 700,
        "!!int " + "1" * 700,
    ],
)
def test_integers_of_more_than_640_digits_are_too_large(source: str) -> None:
    """Huge integer literals are FILE_TOO_LARGE rather than slow or unprintable ints."""
    error = only_error(f"v: {source}\n")
    assert error.code == Code.FILE_TOO_LARGE
    assert error.position == at(1, 4)
    assert error.message == "this number is too large: numbers may have at most 640 digits"


def test_integers_up_to_640_digits_are_read() -> None:
    """A 640-digit integer is still an int; the same digits quoted are text."""
    digits = "9" * 640
    assert only_value(f"a: {digits}\nb: '{digits}{digits}'\n") == {
        "a": int(digits),
        "b": digits * 2,
    }


# ---------------------------------------------------------------- unexpected failures


class _FakeLoader:
    """A loader that yields some events and then fails the way it is told to."""

    def __init__(self, failure: Exception, events: list[yaml.Event]) -> None:
        self.failure = failure
        self.events = list(events)

    def __call__(self, _text: str) -> _FakeLoader:
        return self

    def get_event(self) -> yaml.Event:
        if self.events:
            return self.events.pop(0)
        raise self.failure

    def dispose(self) -> None:
        """Nothing to release."""


def _mark(line: int, column: int) -> yaml.Mark:
    return yaml.Mark(FILE, 0, line, column, None, 0)


_OPENING = [
    yaml.StreamStartEvent(_mark(0, 0), _mark(0, 0)),
    yaml.DocumentStartEvent(_mark(2, 4), _mark(2, 4)),
]


@pytest.mark.parametrize(
    ("failure", "events", "position", "message"),
    [
        (
            RuntimeError("boom"),
            _OPENING,
            at(3, 5),
            "the YAML could not be read after this point (RuntimeError: boom)",
        ),
        (
            yaml.reader.ReaderError(FILE, 3, b"\x01", "utf-8", "odd"),
            [],
            at(1, 1),
            (
                "the YAML could not be read after this point (ReaderError: 'utf-8' codec "
                'can\'t decode byte #x01: odd in "policies/tiers.yaml", position 3)'
            ),
        ),
        (
            yaml.parser.ParserError(None, None, "broken", None),
            _OPENING,
            at(3, 5),
            "invalid YAML: broken",
        ),
        (
            yaml.parser.ParserError("while parsing", None, None, None),
            [],
            at(1, 1),
            "invalid YAML: while parsing",
        ),
    ],
)
def test_unexpected_parser_failures_become_diagnostics(
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    events: list[yaml.Event],
    position: Position,
    message: str,
) -> None:
    """Whatever PyYAML raises becomes YAML_SYNTAX at the last known position."""
    monkeypatch.setattr(_yaml, "_LOADER", _FakeLoader(failure, events))
    error = only_error("a: 1\n")
    assert error.code == Code.YAML_SYNTAX
    assert error.position == position
    assert error.message == message


def test_a_parser_that_runs_dry_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loader returning no event (instead of a stream end) ends reading cleanly."""
    loader = _FakeLoader(RuntimeError("unreachable"), [*_OPENING])
    monkeypatch.setattr(loader, "get_event", lambda: loader.events.pop(0) if loader.events else None)
    monkeypatch.setattr(_yaml, "_LOADER", loader)
    assert read("a: 1\n") == ([], [])


def _second_copy(module: str) -> ModuleType:
    """Load a fresh, independent copy of a PyYAML module, as a repeated import would."""
    spec = importlib.util.find_spec(module)
    assert spec is not None
    assert spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    return copy


def test_events_and_errors_of_a_second_pyyaml_import_are_understood(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Events and errors whose classes come from another import of PyYAML still work.

    libyaml keeps the classes of the first import of ``yaml``; when ``yaml`` is imported
    again (coverage.py does this), its events are not instances of the new classes.
    """
    events, errors = _second_copy("yaml.events"), _second_copy("yaml.error")
    assert events.ScalarEvent is not yaml.ScalarEvent

    class ScannerError(errors.MarkedYAMLError):
        """A scanner error of the other import."""

    mark = errors.Mark(FILE, 0, 0, 3, None, 0)
    stream = [
        events.StreamStartEvent(mark, mark),
        events.DocumentStartEvent(mark, mark),
        events.MappingStartEvent(None, None, True, mark, mark),
        events.ScalarEvent(None, None, (True, False), "a", mark, mark),
        events.ScalarEvent(None, None, (True, False), "1", mark, mark),
        events.MappingEndEvent(mark, mark),
        events.DocumentEndEvent(mark, mark),
        events.StreamEndEvent(mark, mark),
    ]
    monkeypatch.setattr(_yaml, "_LOADER", _FakeLoader(RuntimeError("unused"), stream))
    assert only_value("a: 1\n") == {"a": 1}
    failure = ScannerError(None, None, "mapping values are not allowed here", mark)
    monkeypatch.setattr(_yaml, "_LOADER", _FakeLoader(failure, stream[:2]))
    error = only_error("a: 1\n")
    assert error.code == Code.YAML_SYNTAX
    assert error.position == at(1, 4)
    assert error.message == "invalid YAML: mapping values are not allowed here"


# ---------------------------------------------------------------- size


def test_a_200_kb_policy_reads_whole() -> None:
    """A 200 KB policy file is read completely (its speed is measured by the benchmarks)."""
    feature = (
        "  feature_{i}:\n    from: gold\n    rollout: {i}\n"
        "    when: 'seller.verified && metrics.rating >= 4.5'\n    tags: [a, b, c]\n"
    )
    source = "features:\n" + "".join(feature.format(i=i) for i in range(1_700))
    data = source.encode()
    assert 190_000 < len(data) < 210_000
    document = only_document(data)
    assert isinstance(document.value, dict)
    assert len(document.value["features"]) == 1_700


# ---------------------------------------------------------------- properties


def _check_outcome(documents: list[YamlDocument], diagnostics: list[Diagnostic]) -> None:
    """Assert the all-or-nothing contract and well-formed diagnostics."""
    assert not (documents and diagnostics)
    for diagnostic in diagnostics:
        assert diagnostic.severity == "error"
        assert diagnostic.code in Code
        assert diagnostic.position.file == FILE
        assert diagnostic.position.line >= 1
        assert diagnostic.position.column >= 1


@settings(deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    """Any bytes give documents or diagnostics, never an exception."""
    _check_outcome(*read_documents(data, FILE))


@settings(deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(text: str) -> None:
    """Any text gives documents or diagnostics, never an exception."""
    _check_outcome(*read_documents(text.encode("utf-8", "surrogatepass"), FILE))


@settings(max_examples=300, deadline=None)
@given(yaml_like_text())
def test_yaml_like_text_never_raises(text: str) -> None:
    """Text dense in YAML indicators gives documents or diagnostics, never an exception."""
    _check_outcome(*read_documents(text.encode(), FILE, YamlLimits(max_depth=4, max_nodes=50)))


# Strings the YAML 1.2 core schema reads as something other than text when unquoted.
# ``yaml.safe_dump`` quotes by YAML 1.1 rules, so it leaves some of them (``1e5``,
# ``0o17``, ``+.5``) bare; those would come back as numbers, which is this reader being
# right, not a failed round trip.
_CORE_NON_TEXT = re.compile(
    r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
    r"|true|True|TRUE|false|False|FALSE|null|Null|NULL|~|",
)
_round_trip_text = st.text().filter(lambda text: _CORE_NON_TEXT.fullmatch(text) is None)


@settings(max_examples=200, deadline=None)
@given(json_values(text=_round_trip_text))
def test_values_dumped_by_pyyaml_read_back_equal(value: object) -> None:
    """``yaml.safe_dump`` output of JSON-like data reads back as the same data."""
    document = only_document(yaml.safe_dump(value))
    assert document.value == value
