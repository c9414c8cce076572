"""Tests of turning pydantic errors into diagnostics a product manager can act on."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tierpolicy import Code
from tierpolicy.engine._documents import ContextSpec, FeatureSpec, Metadata, TiersSpec
from tierpolicy.engine._validation import allowed_keys, data_path, describe, translate


def translated(model: type[BaseModel], data: object, where: str = "spec"):
    """Validate ``data`` against ``model`` and return the translated errors."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return translate(info.value.errors(), data, model, where)


def tiers(**spec: object) -> dict[str, object]:
    """A Tiers spec with one tier ``a`` and ``spec`` added."""
    return {"tiers": [{"name": "a"}], **spec}


class _Bounds(BaseModel):
    """A model with the bounds and constraints the document models do not use."""

    model_config = ConfigDict(extra="forbid", strict=True)

    above: Annotated[int, Field(gt=0)] = 1
    below: Annotated[int, Field(lt=10)] = 1
    step: Annotated[int, Field(multiple_of=5)] = 5
    names: Annotated[list[str], Field(max_length=2)] = Field(default_factory=list)


# --------------------------------------------------------------------------- describe


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "nothing (null)"),
        (True, "true (a boolean)"),
        (False, "false (a boolean)"),
        (0, "the number 0"),
        (-12, "the number -12"),
        (2.5, "the number 2.5"),
        (1e20, "the number 1e+20"),
        ("lots", "the text 'lots'"),
        ("", "the text ''"),
        ("x" * 40, "the text '" + "x" * 40 + "'"),
        ("y" * 41, "the text '" + "y" * 37 + "...'"),
        ([1, 2], "a list"),
        ({"a": 1}, "a mapping"),
        (dt.date(2026, 1, 1), "date"),
        (b"raw", "bytes"),
    ],
)
def test_describe(value, text):
    """A YAML value is named for "found ..." messages; text over 40 characters is shortened."""
    assert describe(value) == text


# --------------------------------------------------------------------------- data_path


def test_data_path_keeps_real_keys_and_indexes():
    """A location naming real places is kept whole, list indexes included."""
    data = {"tiers": [{"name": "A"}]}
    assert data_path(("tiers", 0, "name"), data) == ("tiers", 0, "name")


@pytest.mark.parametrize(
    ("loc", "data", "path"),
    [
        (
            ("limits", "x", "values", "a", "constrained-int"),
            {"limits": {"x": {"values": {"a": "lots"}}}},
            ("limits", "x", "values", "a"),
        ),
        (
            ("limits", "x", "values", "a", "literal['unlimited']"),
            {"limits": {"x": {"values": {"a": {"n": 1}}}}},
            ("limits", "x", "values", "a"),
        ),
        (("attributes", "x", "dict[str,any]"), {"attributes": {"x": 5}}, ("attributes", "x")),
        (("attributes", "x", "str"), {"attributes": {"x": {}}}, ("attributes", "x")),
        (("features", "Bad", "[key]"), {"features": {"Bad": {"from": "a"}}}, ("features", "Bad")),
        (("features", "Bad", "[key]"), {"features": {"Bad": None}}, ("features", "Bad")),
        (("value", "function-after[_one_target()]"), {"value": {}}, ("value",)),
    ],
)
def test_data_path_drops_union_branch_labels(loc, data, path):
    """Union-branch labels, validator names and [key] markers are not keys of the document."""
    assert data_path(loc, data) == path


def test_data_path_keeps_a_missing_or_extra_key_name():
    """A key absent from the data is kept as the last element, to name it in the message."""
    assert data_path(("progression", "rules"), {"progression": {}}) == ("progression", "rules")
    assert data_path(("metadata", "name", "deeper"), {"metadata": {}}) == ("metadata", "name")


def test_data_path_stops_at_an_index_out_of_range():
    """An index beyond a list's end, or into a non-container, ends the path before it."""
    assert data_path(("tiers", 3, "name"), {"tiers": [{"name": "a"}]}) == ("tiers",)
    assert data_path(("tiers", "name"), {"tiers": [{"name": "a"}]}) == ("tiers",)
    assert data_path(("tiers", 0), {"tiers": "abc"}) == ("tiers",)


def test_data_path_of_top_level_error_is_empty():
    """An error about the whole input has the empty path."""
    assert data_path((), None) == ()
    assert data_path(("x",), None) == ()


# --------------------------------------------------------------------------- allowed_keys


@pytest.mark.parametrize(
    ("model", "path", "keys"),
    [
        (TiersSpec, (), ["tiers", "features", "limits", "progression", "overrides"]),
        (TiersSpec, ("tiers", 0), ["name", "description"]),
        (TiersSpec, ("features", "any.name"), ["description", "from", "tiers", "when", "rollout", "enabled"]),
        (TiersSpec, ("limits", "x"), ["description", "unit", "values"]),
        (TiersSpec, ("progression",), ["window_days", "grace_period_days", "rules"]),
        (TiersSpec, ("progression", "rules", "gold"), ["when", "description"]),
        (
            TiersSpec,
            ("overrides", 2),
            ["id", "seller", "feature", "limit", "tier", "value", "reason", "expires", "starts", "author"],
        ),
        (Metadata, (), ["name", "description", "labels"]),
        (ContextSpec, (), ["attributes"]),
    ],
)
def test_allowed_keys_through_dicts_lists_and_unions(model, path, keys):
    """allowed_keys follows dict values, list items and optional models; aliases are shown."""
    assert allowed_keys(model, path) == keys


@pytest.mark.parametrize(
    ("model", "path"),
    [
        (TiersSpec, ("bogus",)),
        (TiersSpec, ("features",)),
        (TiersSpec, ("features", "f", "when")),
        (TiersSpec, ("features", "f", "when", "x")),
        (TiersSpec, ("limits", "x", "values", "gold")),
        (TiersSpec, ("features", "f", "tiers", 0)),
        (ContextSpec, ("attributes", "metrics")),
        (Metadata, ("labels",)),
    ],
)
def test_allowed_keys_is_none_where_no_model_is(model, path):
    """Unknown keys, plain mappings, scalars and unions without a model have no key list."""
    assert allowed_keys(model, path) is None


# --------------------------------------------------------------------------- translate


def test_unknown_key_suggests_and_lists_allowed_keys():
    """An unknown key is reported at the key, with a close match and the allowed keys."""
    assert translated(TiersSpec, tiers(features={"f": {"from": "a", "descripton": "x"}})) == [
        (
            ("features", "f", "descripton"),
            Code.UNKNOWN_KEY,
            "unknown key 'descripton' in spec.features.f",
            "did you mean 'description'? allowed here: description, from, tiers, when, rollout, enabled",
            True,
        )
    ]


def test_unknown_key_without_a_close_match_lists_allowed_keys_only():
    """Without a close match the hint only lists the allowed keys."""
    assert translated(TiersSpec, tiers(zebra=1)) == [
        (
            ("zebra",),
            Code.UNKNOWN_KEY,
            "unknown key 'zebra' in spec",
            "allowed here: tiers, features, limits, progression, overrides",
            True,
        )
    ]


def test_unknown_key_where_no_keys_are_known_has_no_hint():
    """An extra key at a place without a model gets no hint at all."""
    error = {"type": "extra_forbidden", "loc": ("attributes", "m", "x"), "msg": "Extra", "input": 1}
    data = {"attributes": {"m": {"x": 1}}}
    assert translate([error], data, ContextSpec, "spec") == [
        (("attributes", "m", "x"), Code.UNKNOWN_KEY, "unknown key 'x' in spec.attributes.m", None, True)
    ]


def test_missing_key_is_reported_at_the_parent():
    """A missing key is reported at the mapping that lacks it, naming the key."""
    assert translated(TiersSpec, tiers(limits={"listings": {"unit": "x"}})) == [
        (
            ("limits", "listings"),
            Code.MISSING_KEY,
            "spec.limits.listings is missing the required key 'values'",
            None,
            False,
        )
    ]
    assert translated(Metadata, {}, "metadata") == [
        ((), Code.MISSING_KEY, "metadata is missing the required key 'name'", None, False)
    ]


def test_union_type_errors_merge_into_one_message():
    """The errors of every union branch at one place merge into one 'should be' message."""
    assert translated(TiersSpec, tiers(limits={"x": {"values": {"a": "lots"}}})) == [
        (
            ("limits", "x", "values", "a"),
            Code.WRONG_TYPE,
            "spec.limits.x.values.a should be a whole number or unlimited, found the text 'lots'",
            None,
            False,
        )
    ]
    assert translated(ContextSpec, {"attributes": {"x": 5}}) == [
        (
            ("attributes", "x"),
            Code.WRONG_TYPE,
            "spec.attributes.x should be text or a mapping of keys to values, found the number 5",
            None,
            False,
        )
    ]


def test_union_value_errors_merge_with_or():
    """Value errors of several union branches join with '; or', the input shown once."""
    [(path, code, message, _, _)] = translated(TiersSpec, tiers(limits={"x": {"values": {"a": -1}}}))
    assert (path, code) == (("limits", "x", "values", "a"), Code.INVALID_VALUE)
    assert message == (
        "spec.limits.x.values.a: must be at least 0; or input should be 'unlimited' (found the number -1)"
    )


def test_errors_at_different_places_stay_separate_and_ordered():
    """Each place gets its own message, in the order pydantic reported them."""
    results = translated(TiersSpec, {"tiers": [{"name": "A"}, {"name": 3}], "limits": []})
    assert [(r[0], r[1]) for r in results] == [
        (("tiers", 0, "name"), Code.INVALID_VALUE),
        (("tiers", 1, "name"), Code.WRONG_TYPE),
        (("limits",), Code.WRONG_TYPE),
    ]
    assert results[1][2] == "spec.tiers[1].name should be text, found the number 3"
    assert results[2][2] == "spec.limits should be a mapping of keys to values, found a list"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            tiers(features={"Bulk": {"from": "a"}}),
            (
                "spec.features.Bulk: names use lowercase letters, digits and '_', start with a letter,"
                " and may be dotted like 'analytics.advanced' (found the text 'Bulk')"
            ),
        ),
        (
            {"tiers": [{"name": "Gold"}]},
            (
                "spec.tiers[0].name: names use lowercase letters, digits and '_', and start with a letter"
                " (found the text 'Gold')"
            ),
        ),
    ],
)
def test_pattern_messages_explain_the_naming_rule(data, message):
    """A name that breaks the pattern is explained in words, dotted names where allowed."""
    [(_, code, text, hint, at_key)] = translated(TiersSpec, data)
    assert (code, text, hint, at_key) == (Code.INVALID_VALUE, message, None, False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"above": 0}, "spec.above: must be more than 0 (found the number 0)"),
        ({"below": 10}, "spec.below: must be less than 10 (found the number 10)"),
        ({"step": 7}, "spec.step: input should be a multiple of 5 (found the number 7)"),
        ({"names": ["a", "b", "c"]}, "spec.names: is too long (at most 2)"),
    ],
)
def test_bounds_and_other_constraints(data, message):
    """Bounds read 'more than'/'less than', and other constraints use pydantic's words, lowercased."""
    [(_, code, text, _, _)] = translated(_Bounds, data)
    assert (code, text) == (Code.INVALID_VALUE, message)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            tiers(progression={"rules": {"a": {"when": "x"}}, "window_days": 0}),
            "spec.progression.window_days: must be at least 1 (found the number 0)",
        ),
        (
            tiers(features={"f": {"from": "a", "rollout": 100.5}}),
            "spec.features.f.rollout: must be at most 100.0 (found the number 100.5)",
        ),
        ({"tiers": []}, "spec.tiers: must not be empty"),
        (
            tiers(overrides=[{"seller": "s", "tier": "a", "reason": "", "expires": "2099-01-01T00:00:00Z"}]),
            "spec.overrides[0].reason: must not be empty (found the text '')",
        ),
        (
            {"tiers": [{"name": "a", "description": "d" * 2001}]},
            "spec.tiers[0].description: is too long (at most 2000) (found the text '" + "d" * 37 + "...')",
        ),
    ],
)
def test_bound_and_length_messages(data, message):
    """Lower and upper bounds, empty values and over-long text have short, plain messages."""
    [(_, code, text, _, _)] = translated(TiersSpec, data)
    assert (code, text) == (Code.INVALID_VALUE, message)


def test_model_validator_message_is_shown_without_the_input_mapping():
    """A whole-mapping error gives the validator's message and no 'found a mapping'."""
    assert translated(TiersSpec, tiers(features={"f": {"from": "a", "tiers": ["a"]}})) == [
        (
            ("features", "f"),
            Code.INVALID_VALUE,
            "spec.features.f: give exactly one of 'from' (a minimum tier) and 'tiers' (a list of tiers)",
            None,
            False,
        )
    ]


def test_timestamp_type_error_gives_an_example():
    """Text that is no RFC 3339 timestamp is an invalid value, with an example of one."""
    data = tiers(overrides=[{"seller": "s", "tier": "a", "reason": "r", "expires": "soon"}])
    [(path, code, text, _, _)] = translated(TiersSpec, data)
    assert (path, code) == (("overrides", 0, "expires"), Code.INVALID_VALUE)
    assert text == (
        "spec.overrides[0].expires: expected an RFC 3339 timestamp with a timezone,"
        " such as 2026-12-31T00:00:00Z (found the text 'soon')"
    )


def test_whole_document_of_the_wrong_type():
    """A spec that is not a mapping says what it should be and what was found."""
    assert translated(FeatureSpec, ["a"], "spec.features.f") == [
        (
            (),
            Code.WRONG_TYPE,
            "spec.features.f should be a mapping of keys to values, found a list",
            None,
            False,
        )
    ]
