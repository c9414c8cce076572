"""Tests of the context schema: building the CEL environment and converting JSON context."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import tierpolicy
from tierpolicy import Code, Position
from tierpolicy.engine._context import (
    BUILTIN_ROOTS,
    BUILTIN_SELLER_FIELDS,
    ContextCoercion,
    SchemaError,
    build_environment,
    coerce_context,
    parse_duration,
    parse_timestamp,
    value_problem,
)
from tierpolicy.engine.cel import (
    BOOL,
    DOUBLE,
    INT,
    STRING,
    TIMESTAMP,
    ListType,
    MapType,
    ObjectType,
    parse_type,
)

SELLER = ObjectType("seller", {"id": STRING, "tier": STRING})


def at(document: str):
    """A locator that encodes the document and the dotted path in the position's file."""
    return lambda path: Position(f"{document}#{'.'.join(path)}")


def env_of(*trees: dict[str, object]):
    """Build the environment of Context documents d0, d1, ... and return (env, problems)."""
    return build_environment([(tree, at(f"d{i}")) for i, tree in enumerate(trees)])


def problems_of(*trees: dict[str, object]) -> list[tuple[Code, str, tuple[str, ...], str | None, str]]:
    """The problems found building the environment, sorted by position."""
    _, problems = env_of(*trees)
    found = [(p.code, p.message, p.path, p.hint, str(where)) for p, where in problems]
    return sorted(found, key=lambda item: item[4])


# --------------------------------------------------------------------------- build_environment


def test_builtins_without_any_context_document():
    """With no Context documents the environment holds seller.id, seller.tier and now."""
    env, problems = env_of()
    assert problems == []
    assert env == {"seller": SELLER, "now": TIMESTAMP}
    assert dict(BUILTIN_SELLER_FIELDS) == {"id": STRING, "tier": STRING}
    assert dict(BUILTIN_ROOTS) == {"now": TIMESTAMP}


def test_builtins_are_read_only():
    """The built-in tables cannot be changed by a caller."""
    with pytest.raises(TypeError):
        BUILTIN_ROOTS["today"] = TIMESTAMP  # type: ignore[index]


def test_nested_objects_become_object_types():
    """Nested mappings declare objects; seller fields join the built-in ones."""
    env, problems = env_of(
        {
            "seller": {"verified": "bool"},
            "metrics": {"orders": "int", "window": {"days": "int", "since": "timestamp"}},
            "tags": "list<string>",
            "scores": "map<string, double>",
        }
    )
    assert problems == []
    assert env == {
        "seller": ObjectType("seller", {"id": STRING, "tier": STRING, "verified": BOOL}),
        "now": TIMESTAMP,
        "metrics": ObjectType(
            "metrics",
            {"orders": INT, "window": ObjectType("metrics.window", {"days": INT, "since": TIMESTAMP})},
        ),
        "tags": ListType(STRING),
        "scores": MapType(STRING, DOUBLE),
    }


def test_builtins_may_be_redeclared_with_their_own_type():
    """Declaring seller.id as string or now as timestamp again is allowed and changes nothing."""
    env, problems = env_of({"seller": {"id": "string", "tier": "string"}, "now": "timestamp"})
    assert problems == []
    assert env == {"seller": SELLER, "now": TIMESTAMP}


def test_documents_merge_and_may_repeat_a_declaration():
    """Several documents add up; the same attribute with the same type twice is fine."""
    env, problems = env_of({"metrics": {"orders": "int"}}, {"metrics": {"orders": "int", "rating": "double"}})
    assert problems == []
    assert env["metrics"] == ObjectType("metrics", {"orders": INT, "rating": DOUBLE})


def test_type_name_errors_have_their_own_code():
    """An unknown type name and a non-text leaf are TP304 errors naming the attribute."""
    assert problems_of({"metrics": {"orders": "intt", "rating": 4.5, "flags": ["bool"]}}) == [
        (
            Code.INVALID_TYPE_NAME,
            "attribute 'metrics.flags' needs a type name such as int, double, string",
            ("metrics", "flags"),
            None,
            "d0#metrics.flags:1:1",
        ),
        (
            Code.INVALID_TYPE_NAME,
            "unknown type 'intt'",
            ("metrics", "orders"),
            "did you mean 'int'?",
            "d0#metrics.orders:1:1",
        ),
        (
            Code.INVALID_TYPE_NAME,
            "attribute 'metrics.rating' needs a type name such as int, double, string",
            ("metrics", "rating"),
            None,
            "d0#metrics.rating:1:1",
        ),
    ]


def test_attribute_with_a_bad_type_is_left_out():
    """An attribute whose type does not parse is not declared; its siblings are."""
    env, _ = env_of({"metrics": {"orders": "intt", "rating": "double"}})
    assert env["metrics"] == ObjectType("metrics", {"rating": DOUBLE})


def test_empty_object_is_an_error():
    """An object with no attributes is an error and declares nothing."""
    env, problems = env_of({"metrics": {}})
    assert [(p.code, p.message, p.path) for p, _ in problems] == [
        (Code.INVALID_VALUE, "an object needs at least one attribute", ("metrics",))
    ]
    assert "metrics" not in env


def test_conflict_between_documents_points_at_the_first():
    """The same attribute with two types is TP410 at the second, hinting at the first."""
    assert problems_of({"metrics": {"orders": "int"}}, {"metrics": {"orders": "double"}}) == [
        (
            Code.CONTEXT_CONFLICT,
            "attribute 'metrics.orders' is declared twice with different types (int and double)",
            ("metrics", "orders"),
            "first declared at d0#metrics.orders:1:1",
            "d1#metrics.orders:1:1",
        )
    ]


def test_conflicting_declaration_keeps_the_first_type():
    """After a conflict the first declaration's type stays in the environment."""
    env, _ = env_of({"level": "int"}, {"level": "string"})
    assert env["level"] == INT


@pytest.mark.parametrize(
    ("tree", "path", "message"),
    [
        (
            {"seller": {"tier": "int"}},
            ("seller", "tier"),
            "attribute 'seller.tier' is built in with type string; it cannot be redeclared as int",
        ),
        (
            {"seller": {"id": "int"}},
            ("seller", "id"),
            "attribute 'seller.id' is built in with type string; it cannot be redeclared as int",
        ),
        (
            {"now": "string"},
            ("now",),
            "attribute 'now' is built in with type timestamp; it cannot be redeclared as string",
        ),
    ],
)
def test_conflict_with_a_builtin(tree, path, message):
    """Redeclaring a built-in attribute with another type is TP410, and the built-in stays."""
    env, problems = env_of(tree)
    assert [(p.code, p.message, p.path, p.hint) for p, _ in problems] == [
        (Code.CONTEXT_CONFLICT, message, path, None)
    ]
    assert env == {"seller": SELLER, "now": TIMESTAMP}


@pytest.mark.parametrize(
    "trees",
    [
        ({"metrics": {"window": "int"}}, {"metrics": {"window": {"days": "int"}}}),
        ({"metrics": {"window": {"days": "int"}}}, {"metrics": {"window": "int"}}),
        ({"level": "int"}, {"level": {"value": "int"}}),
        ({"seller": "string"},),
        ({"now": {"year": "int"}},),
        ({"seller": {"id": {"value": "string"}}},),
    ],
)
def test_attribute_and_object_of_the_same_name_conflict(trees):
    """A name that is an attribute in one declaration and an object in another is TP410."""
    _, problems = env_of(*trees)
    assert [p.code for p, _ in problems] == [Code.CONTEXT_CONFLICT]


@pytest.mark.parametrize("name", ["in", "null", "true", "namespace", "9lives", "has-dash", "dot.ted", ""])
def test_invalid_attribute_names(name):
    """Names CEL cannot select (reserved words, bad identifiers) are rejected where they are."""
    env, problems = env_of({"metrics": {name: "int", "fine": "int"}})
    [(problem, where)] = problems
    assert (problem.code, problem.message, problem.path) == (
        Code.INVALID_VALUE,
        f"attribute name {name!r} cannot be used in conditions",
        ("metrics", name),
    )
    assert problem.hint is not None
    assert "reserved words" in problem.hint
    assert str(where) == f"d0#metrics.{name}:1:1"
    assert env["metrics"] == ObjectType("metrics", {"fine": INT})


def test_invalid_object_name_skips_its_whole_subtree():
    """An object with an invalid name is reported once; its contents are not declared."""
    env, problems = env_of({"in": {"x": "intt"}})
    assert [p.path for p, _ in problems] == [("in",)]
    assert "in" not in env


def test_names_may_start_with_an_underscore_or_be_uppercase():
    """CEL identifiers may start with '_' and contain uppercase letters."""
    env, problems = env_of({"metrics": {"_raw": "int", "GMV": "double"}})
    assert problems == []
    assert env["metrics"] == ObjectType("metrics", {"_raw": INT, "GMV": DOUBLE})


def test_schema_error_carries_its_parts():
    """SchemaError keeps message, path, hint and code, and reads as its message."""
    error = SchemaError("bad", ("a", "b"), hint="try c", code=Code.CONTEXT_CONFLICT)
    assert (str(error), error.path, error.hint, error.code) == (
        "bad",
        ("a", "b"),
        "try c",
        Code.CONTEXT_CONFLICT,
    )
    assert SchemaError("plain", ()).code is Code.INVALID_VALUE


def test_loader_reports_context_problems_at_their_keys():
    """Through the loader, a context conflict is a positioned TP410 error."""
    text = (
        "apiVersion: tierpolicy/v1\nkind: Context\nmetadata: {name: a}\nspec:\n"
        "  attributes:\n    seller: {tier: int}\n"
    )
    with pytest.raises(tierpolicy.PolicyLoadError) as info:
        tierpolicy.load_files({"c.yaml": text})
    assert [d.format() for d in info.value.diagnostics] == [
        "c.yaml:6:14: error[TP410]: attribute 'seller.tier' is built in with type string; it cannot be redeclared as int"
    ]


# --------------------------------------------------------------------------- coerce_context

ENV, _ = env_of(
    {
        "seller": {"joined_at": "timestamp", "verified": "bool"},
        "metrics": {"tenure": "duration", "window": {"since": "timestamp", "length": "duration"}},
        "deadline": "timestamp",
    }
)


def test_coerce_converts_timestamps_and_durations_at_every_depth():
    """Timestamp and duration strings become datetimes and timedeltas, nested objects included."""
    context = {
        "seller": {"id": "s-1", "tier": "gold", "joined_at": "2026-01-31T12:00:00+01:00", "verified": True},
        "metrics": {"tenure": "1h30m", "window": {"since": "2026-11-01T00:00:00Z", "length": "2160h"}},
        "deadline": "2026-12-31T23:59:59.5Z",
    }
    assert coerce_context(context, ENV) == {
        "seller": {
            "id": "s-1",
            "tier": "gold",
            "joined_at": dt.datetime(2026, 1, 31, 11, tzinfo=dt.UTC),
            "verified": True,
        },
        "metrics": {
            "tenure": dt.timedelta(hours=1, minutes=30),
            "window": {"since": dt.datetime(2026, 11, 1, tzinfo=dt.UTC), "length": dt.timedelta(days=90)},
        },
        "deadline": dt.datetime(2026, 12, 31, 23, 59, 59, 500_000, tzinfo=dt.UTC),
    }


def test_coerce_does_not_change_its_input():
    """The caller's context (and its nested objects) are left as they were."""
    context = {"seller": {"id": "s", "tier": "gold", "joined_at": "2026-01-01T00:00:00Z"}}
    coerce_context(context, ENV)
    assert context == {"seller": {"id": "s", "tier": "gold", "joined_at": "2026-01-01T00:00:00Z"}}


def test_coerce_leaves_other_values_alone():
    """Undeclared keys, absent attributes, non-text values and non-objects are not touched."""
    joined = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    context = {
        "seller": {"id": "s", "tier": "gold", "joined_at": joined},
        "metrics": "not an object",
        "deadline": 1_700_000_000,
        "extra": "2026-01-01T00:00:00Z",
    }
    assert coerce_context(context, ENV) == context
    assert coerce_context({}, ENV) == {}


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {"seller": {"joined_at": "yesterday"}},
            "seller.joined_at: expected an RFC 3339 timestamp such as 2026-01-31T12:00:00Z, found 'yesterday'",
        ),
        (
            {"deadline": "2026-02-30T00:00:00Z"},
            "deadline: expected an RFC 3339 timestamp such as 2026-01-31T12:00:00Z, found '2026-02-30T00:00:00Z'",
        ),
        (
            {"metrics": {"tenure": "90 days"}},
            "metrics.tenure: expected a duration such as 90s, 36h or 1h30m, found '90 days'",
        ),
        (
            {"metrics": {"window": {"since": "2026-11-01"}}},
            "metrics.window.since: expected an RFC 3339 timestamp such as 2026-01-31T12:00:00Z, found '2026-11-01'",
        ),
        (
            {"metrics": {"window": {"length": ""}}},
            "metrics.window.length: expected a duration such as 90s, 36h or 1h30m, found ''",
        ),
    ],
)
def test_coerce_names_the_attribute_of_a_bad_value(context, message):
    """A malformed timestamp or duration raises ValueError naming the dotted attribute."""
    with pytest.raises(ValueError) as info:
        coerce_context(context, ENV)
    assert str(info.value) == message


def test_parse_helpers_name_the_place():
    """parse_timestamp and parse_duration convert valid text and name the place otherwise."""
    assert parse_timestamp("2026-01-01T00:00:00-02:30", "now") == dt.datetime(
        2026, 1, 1, 2, 30, tzinfo=dt.UTC
    )
    assert parse_duration("-1.5h", "grace") == -dt.timedelta(minutes=90)
    with pytest.raises(ValueError, match=r"^now: expected an RFC 3339 timestamp"):
        parse_timestamp("2026-01-01 00:00", "now")
    with pytest.raises(ValueError, match=r"^grace: expected a duration"):
        parse_duration("1d", "grace")


def test_duration_attribute_in_a_condition_reads_the_converted_value():
    """A duration attribute sent as text is compared as a duration by the evaluation API."""
    policy = (
        "apiVersion: tierpolicy/v1\nkind: Context\nmetadata: {name: c}\nspec:\n"
        "  attributes: {metrics: {tenure: duration}}\n---\n"
        "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\nspec:\n"
        "  tiers: [{name: a}]\n"
        "  features: {f: {from: a, when: 'metrics.tenure >= duration(\"2160h\")'}}\n"
    )
    engine = tierpolicy.Engine(tierpolicy.load_files({"p.yaml": policy}))
    for tenure, allowed in (("2160h", True), ("2159h59m59s", False)):
        answer = tierpolicy.evaluate(
            engine,
            {
                "context": {"seller": {"id": "s", "tier": "a"}, "metrics": {"tenure": tenure}},
                "queries": [{"kind": "feature", "name": "f"}],
            },
        )
        assert answer["results"][0]["decision"]["allowed"] is allowed


def test_timestamps_inside_lists_are_converted():
    """A list<timestamp> attribute sent as RFC 3339 strings is converted element by element."""
    env, _ = env_of({"audits": "list<timestamp>"})
    assert coerce_context({"audits": ["2026-01-01T00:00:00Z"]}, env) == {
        "audits": [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    }


def test_timestamps_inside_maps_are_converted_and_named_by_key():
    """A map<string, timestamp> attribute is converted value by value; a bad value is named by its key."""
    env, _ = env_of({"seen": "map<string, timestamp>"})
    assert coerce_context({"seen": {"eu": "2026-01-01T00:00:00Z"}}, env) == {
        "seen": {"eu": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}
    }
    with pytest.raises(ValueError, match=r"^seen\['us'\]: expected an RFC 3339 timestamp"):
        coerce_context({"seen": {"eu": "2026-01-01T00:00:00Z", "us": "soon"}}, env)
    with pytest.raises(ValueError, match=r"^audits\[1\]: expected an RFC 3339 timestamp"):
        coerce_context(
            {"audits": ["2026-01-01T00:00:00Z", "later"]}, env_of({"audits": "list<timestamp>"})[0]
        )


def test_a_planned_coercion_copies_only_what_it_converts():
    """ContextCoercion returns a new top level; objects holding nothing to convert are passed through as they are."""
    coercion = ContextCoercion(ENV)
    untouched = {"anything": [1, 2]}
    context = {"seller": {"joined_at": "2026-01-01T00:00:00Z"}, "other": untouched}
    result = coercion(context)
    assert result is not context
    assert result["other"] is untouched
    assert result["seller"] == {"joined_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}
    assert context["seller"] == {"joined_at": "2026-01-01T00:00:00Z"}
    plain, _ = env_of({"seller": {"verified": "bool"}, "tags": "list<string>"})
    nothing = {"seller": {"verified": True}}
    assert ContextCoercion(plain)(nothing) == nothing
    assert ContextCoercion(plain)(nothing) is not nothing


def test_an_engine_coerces_as_its_schema_declares():
    """Engine.coerce is coerce_context over the engine's own schema."""
    engine = tierpolicy.load(Path(__file__).resolve().parents[1] / "policies")
    context = {"seller": {"id": "s", "tier": "gold", "joined_at": "2024-03-14T09:30:00Z"}}
    assert engine.coerce(context) == coerce_context(context, engine.policy_set.environment)
    assert engine.coerce(context)["seller"]["joined_at"] == dt.datetime(2024, 3, 14, 9, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "type_name", "problem"),
    [
        (True, "bool", None),
        (1, "bool", "a: expected true or false, found 1 (a number)"),
        (3, "int", None),
        (True, "int", "a: expected a whole number, found true (a boolean)"),
        (2.5, "int", "a: expected a whole number, found 2.5 (a number)"),
        (0, "uint", None),
        (-1, "uint", "a: expected a whole number of 0 or more, found -1 (a number)"),
        (3, "double", None),
        (None, "double", "a: expected a number, found null"),
        ("x", "string", None),
        (["x"], "string", "a: expected text, found a list"),
        ("2026-01-01T00:00:00Z", "timestamp", None),
        (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "timestamp", None),
        (5, "timestamp", "a: expected timestamp text, found 5 (a number)"),
        ("90s", "duration", None),
        ("soon", "duration", "a: expected a duration such as 90s, 36h or 1h30m, found 'soon'"),
        ({"k": 1}, "list<int>", "a: expected a list, found an object"),
        ({"eu": 1, "us": "2"}, "map<string, int>", "a['us']: expected a whole number, found '2' (text)"),
        ("x", "map<string, int>", "a: expected an object, found 'x' (text)"),
        ({"anything": [1, "x"]}, "dyn", None),
    ],
)
def test_value_problem_names_what_a_json_value_lacks_for_its_type(value, type_name, problem):
    """value_problem accepts the JSON forms the evaluation reads and says what is wrong with the rest."""
    assert value_problem(value, parse_type(type_name), "a") == problem


def test_value_problem_checks_declared_objects_field_by_field():
    """An object is checked against its declared fields; an undeclared field is named."""
    env, _ = env_of({"seller": {"joined_at": "timestamp", "verified": "bool"}})
    seller = env["seller"]
    assert value_problem({"verified": True}, seller, "seller") is None
    assert value_problem({"verified": "yes"}, seller, "seller") == (
        "seller.verified: expected true or false, found 'yes' (text)"
    )
    assert (
        value_problem({"colour": "red"}, seller, "seller")
        == "seller.colour: not declared in the context schema"
    )
