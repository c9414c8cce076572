from __future__ import annotations

import pytest

from tierpolicy.engine._exceptions import ExpressionTypeError
from tierpolicy.engine.cel import (
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
    ListType,
    MapType,
    ObjectType,
    parse_type,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bool", BOOL),
        ("int", INT),
        ("uint", UINT),
        ("double", DOUBLE),
        ("string", STRING),
        ("bytes", BYTES),
        ("null_type", NULL_TYPE),
        ("timestamp", TIMESTAMP),
        ("duration", DURATION),
        ("dyn", DYN),
        ("list<string>", ListType(STRING)),
        ("map<string, int>", MapType(STRING, INT)),
        ("  map < int , list<map<string,dyn>> >  ", MapType(INT, ListType(MapType(STRING, DYN)))),
    ],
)
def test_parse_type_reads_every_supported_name(text, expected):
    """Every primitive, list and map type name parses to the equal value object."""
    assert parse_type(text) == expected


@pytest.mark.parametrize(
    "cel_type",
    [INT, ListType(STRING), MapType(STRING, ListType(DOUBLE)), MapType(DYN, DYN)],
)
def test_str_round_trips_through_parse_type(cel_type):
    """str() of a type is the syntax parse_type reads back."""
    assert parse_type(str(cel_type)) == cel_type


def test_str_of_composite_types():
    """List and map types render with angle brackets and a space after the comma."""
    assert str(ListType(MapType(STRING, INT))) == "list<map<string, int>>"


@pytest.mark.parametrize(
    ("text", "message", "offset", "length", "hint"),
    [
        ("strnig", "unknown type 'strnig'", 0, 6, "did you mean 'string'?"),
        ("list<flaot>", "unknown type 'flaot'", 5, 5, None),
        ("list<int", "expected '>', found end of text", 8, 1, None),
        ("list int", "expected '<', found 'int'", 5, 3, None),
        ("map<double, int>", "map keys must be int, uint, bool or string, not double", 4, 1, None),
        ("int int", "unexpected 'int' after type name", 4, 3, None),
        ("", "expected a type name, found end of text", 0, 1, None),
        ("list<$>", "unknown type '$'", 5, 1, None),
        ("zzz", "unknown type 'zzz'", 0, 3, None),
    ],
)
def test_parse_type_errors_point_into_the_text(text, message, offset, length, hint):
    """A bad type name raises ExpressionTypeError(reason="type_name") at the offending token."""
    with pytest.raises(ExpressionTypeError) as info:
        parse_type(text)
    error = info.value
    assert error.reason == "type_name"
    assert error.message == message
    assert (error.offset, error.length) == (offset, length)
    assert error.hint == hint
    assert error.source == text


def test_parse_type_bounds_nesting():
    """Absurdly nested type names are rejected instead of recursing without bound."""
    with pytest.raises(ExpressionTypeError, match="nests too deeply"):
        parse_type("list<" * 40 + "int" + ">" * 40)


def test_object_type_fields_are_a_read_only_copy():
    """ObjectType copies its fields into a read-only mapping."""
    fields = {"verified": BOOL}
    seller = ObjectType("seller", fields)
    fields["name"] = STRING
    assert dict(seller.fields) == {"verified": BOOL}
    with pytest.raises(TypeError):
        seller.fields["x"] = INT  # type: ignore[index]


def test_object_types_compare_and_hash_by_value():
    """Two ObjectTypes with the same name and fields are equal and hash alike."""
    first = ObjectType("m", {"a": INT, "b": ListType(STRING)})
    second = ObjectType("m", {"b": ListType(STRING), "a": INT})
    assert first == second
    assert hash(first) == hash(second)
    assert first != ObjectType("m", {"a": INT})
    assert str(first) == "m"


def test_types_are_frozen():
    """Type objects cannot be mutated."""
    with pytest.raises(AttributeError):
        INT.name = "other"  # type: ignore[misc]
