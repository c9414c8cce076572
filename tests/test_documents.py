"""Tests of the pydantic models of policy documents: strict shapes, no unknown keys."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from tierpolicy.engine._documents import (
    API_VERSION,
    ContextSpec,
    FeatureSpec,
    LimitSpec,
    Metadata,
    OverrideSpec,
    ProgressionRuleSpec,
    ProgressionSpec,
    TierSpec,
    TiersSpec,
)

EXPIRES = "2099-01-01T00:00:00Z"


def errors(model, data) -> list[tuple[str, tuple[int | str, ...], str]]:
    """Validate ``data`` and return (type, loc, message) for every error."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return [(e["type"], e["loc"], e["msg"]) for e in info.value.errors()]


def override(**fields: object) -> dict[str, object]:
    """An override mapping for seller s-1 with a reason and an expiry, plus ``fields``."""
    return {"seller": "s-1", "reason": "pilot", "expires": EXPIRES, **fields}


def test_format_version():
    """The release reads documents of format version tierpolicy/v1."""
    assert API_VERSION == "tierpolicy/v1"


@pytest.mark.parametrize(
    ("model", "data", "loc"),
    [
        (Metadata, {"name": "m", "owner": "x"}, ("owner",)),
        (ContextSpec, {"attributes": {}, "types": {}}, ("types",)),
        (TierSpec, {"name": "gold", "rank": 3}, ("rank",)),
        (FeatureSpec, {"from": "gold", "form": "gold"}, ("form",)),
        (LimitSpec, {"values": {"gold": 1}, "default": 1}, ("default",)),
        (ProgressionRuleSpec, {"when": "true", "then": "gold"}, ("then",)),
        (ProgressionSpec, {"rules": {"gold": {"when": "true"}}, "window": 3}, ("window",)),
        (OverrideSpec, override(tier="gold", note="x"), ("note",)),
        (TiersSpec, {"tiers": [{"name": "a"}], "featurs": {}}, ("featurs",)),
    ],
)
def test_unknown_keys_are_rejected(model, data, loc):
    """Every model rejects a key it does not declare, naming that key."""
    assert errors(model, data) == [("extra_forbidden", loc, "Extra inputs are not permitted")]


def test_from_is_the_yaml_key_not_the_python_name():
    """A feature's minimum tier is written 'from'; the Python name 'from_' is an unknown key."""
    assert FeatureSpec.model_validate({"from": "silver"}).from_ == "silver"
    assert ("extra_forbidden", ("from_",), "Extra inputs are not permitted") in errors(
        FeatureSpec, {"from_": "silver"}
    )


def test_models_are_frozen():
    """Validated documents cannot be changed afterwards."""
    spec = FeatureSpec.model_validate({"from": "gold"})
    with pytest.raises(ValidationError, match="frozen"):
        spec.enabled = False  # type: ignore[misc]


@pytest.mark.parametrize(
    "data",
    [{}, {"from": "gold", "tiers": ["gold"]}, {"description": "only text"}],
)
def test_exactly_one_of_from_and_tiers(data):
    """A feature gives exactly one of 'from' and 'tiers': neither or both is an error."""
    [(kind, loc, message)] = errors(FeatureSpec, data)
    assert (kind, loc) == ("value_error", ())
    assert message.endswith("give exactly one of 'from' (a minimum tier) and 'tiers' (a list of tiers)")


def test_explicit_tier_list_needs_at_least_one_tier():
    """'tiers' lists at least one tier."""
    [(kind, loc, _)] = errors(FeatureSpec, {"tiers": []})
    assert (kind, loc) == ("too_short", ("tiers",))


def test_feature_defaults():
    """A feature is enabled, without condition or rollout, unless it says otherwise."""
    spec = FeatureSpec.model_validate({"tiers": ["bronze", "gold"]})
    assert (spec.from_, spec.tiers, spec.when, spec.rollout, spec.enabled, spec.description) == (
        None,
        ["bronze", "gold"],
        None,
        None,
        True,
        "",
    )


@pytest.mark.parametrize(
    ("given", "stored"), [(0, 0.0), (50, 50.0), (12.5, 12.5), (0.25, 0.25), (99.99, 99.99), (100, 100.0)]
)
def test_rollout_with_at_most_two_decimals_is_accepted(given, stored):
    """Whole percentages and ones with one or two decimals are valid rollouts (0 to 100)."""
    assert FeatureSpec.model_validate({"from": "a", "rollout": given}).rollout == stored


@pytest.mark.parametrize("given", [12.345, 0.001, 99.999])
def test_rollout_with_more_than_two_decimals_is_rejected(given):
    """A rollout finer than a basis point (0.01 %) is rejected with an example."""
    [(kind, loc, message)] = errors(FeatureSpec, {"from": "a", "rollout": given})
    assert (kind, loc) == ("value_error", ("rollout",))
    assert message == "Value error, rollout is a percentage with at most two decimals, e.g. 12.5"


@pytest.mark.parametrize(("given", "kind"), [(-0.01, "greater_than_equal"), (100.01, "less_than_equal")])
def test_rollout_outside_zero_to_hundred_is_rejected(given, kind):
    """A rollout below 0 % or above 100 % is rejected."""
    assert [e[:2] for e in errors(FeatureSpec, {"from": "a", "rollout": given})] == [(kind, ("rollout",))]


@pytest.mark.parametrize("given", [True, "50"])
def test_rollout_is_a_number_not_a_boolean_or_text(given):
    """A rollout given as true/false or as quoted text is rejected like other strict numbers."""
    with pytest.raises(ValidationError):
        FeatureSpec.model_validate({"from": "a", "rollout": given})


@pytest.mark.parametrize("value", [0, 1, 10**9, "unlimited"])
def test_limit_value_is_a_whole_number_or_unlimited(value):
    """A limit value is a whole number >= 0 or the word 'unlimited'."""
    assert LimitSpec.model_validate({"values": {"gold": value}}).values == {"gold": value}


@pytest.mark.parametrize("value", [-1, 1.0, 2.5, True, "Unlimited", "infinite", None, "10"])
def test_limit_value_rejects_everything_else(value):
    """Negatives, floats, booleans, other words, null and numeric text are not limit values."""
    locations = {e[1][:2] for e in errors(LimitSpec, {"values": {"gold": value}})}
    assert locations == {("values", "gold")}


def test_limit_needs_at_least_one_value():
    """A limit with an empty 'values' mapping is rejected."""
    assert [e[:2] for e in errors(LimitSpec, {"values": {}})] == [("too_short", ("values",))]


def test_progression_defaults_and_bounds():
    """Progression defaults to a 60-day window and no grace, and bounds both."""
    spec = ProgressionSpec.model_validate({"rules": {"gold": {"when": "true"}}})
    assert (spec.window_days, spec.grace_period_days) == (60, 0)
    bad = {"rules": {"gold": {"when": "true"}}, "window_days": 0, "grace_period_days": 3661}
    assert sorted(e[:2] for e in errors(ProgressionSpec, bad)) == [
        ("greater_than_equal", ("window_days",)),
        ("less_than_equal", ("grace_period_days",)),
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {"feature": "promoted", "value": True},
        {"feature": "promoted", "value": False},
        {"limit": "listings", "value": 0},
        {"limit": "listings", "value": "unlimited"},
        {"tier": "gold"},
    ],
)
def test_override_targets_with_matching_values(fields):
    """A feature takes true/false, a limit a number or unlimited, a tier no value."""
    spec = OverrideSpec.model_validate(override(**fields))
    assert spec.value == fields.get("value")
    assert spec.expires == dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "an override names exactly one of 'feature', 'limit' and 'tier'"),
        (
            {"feature": "f", "tier": "gold", "value": True},
            "an override names exactly one of 'feature', 'limit' and 'tier'",
        ),
        ({"feature": "f"}, "a feature override needs 'value: true' or 'value: false'"),
        ({"feature": "f", "value": 1}, "a feature override needs 'value: true' or 'value: false'"),
        ({"feature": "f", "value": "unlimited"}, "a feature override needs 'value: true' or 'value: false'"),
        ({"limit": "l"}, "a limit override needs 'value:' a whole number or 'unlimited'"),
        ({"limit": "l", "value": True}, "a limit override needs 'value:' a whole number or 'unlimited'"),
        ({"tier": "gold", "value": 3}, "a tier override takes no 'value' (the tier is the value)"),
        ({"tier": "gold", "value": False}, "a tier override takes no 'value' (the tier is the value)"),
    ],
)
def test_override_target_rules(fields, message):
    """The override's target and value must fit together; the message says how."""
    assert errors(OverrideSpec, override(**fields)) == [("value_error", (), f"Value error, {message}")]


def test_override_limit_value_is_not_negative():
    """A limit override's number is 0 or more."""
    locations = {e[1] for e in errors(OverrideSpec, override(limit="l", value=-5))}
    assert ("value", "constrained-int") in locations


@pytest.mark.parametrize("field", ["expires", "starts"])
def test_override_timestamps_need_a_timezone(field):
    """'expires' and 'starts' without a timezone are rejected with an example."""
    data = override(tier="gold", **{field: "2099-01-01T00:00:00"})
    assert errors(OverrideSpec, data) == [
        (
            "value_error",
            (field,),
            "Value error, expected an RFC 3339 timestamp with a timezone, such as 2026-12-31T00:00:00Z",
        )
    ]


def test_override_timestamps_keep_their_offset():
    """Timestamps with an offset are accepted and normalised to UTC; 'starts' is optional."""
    spec = OverrideSpec.model_validate(
        override(tier="gold", starts="2026-01-01T09:00:00+02:00", expires="2027-01-01T00:00:00Z")
    )
    assert spec.starts == dt.datetime(2026, 1, 1, 7, tzinfo=dt.UTC)
    assert spec.starts.utcoffset() == dt.timedelta(0)  # normalised to UTC, as conditions see it
    assert OverrideSpec.model_validate(override(tier="gold")).starts is None


def test_override_timestamp_is_not_a_number():
    """A number is not a timestamp: 'expires: 2027' is rejected, not read as seconds since 1970."""
    with pytest.raises(ValidationError):
        OverrideSpec.model_validate(override(tier="gold", expires=2027))


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"seller": ""}, ("seller",)),
        ({"reason": ""}, ("reason",)),
        ({"id": "Pilot 7"}, ("id",)),
        ({"tier": "Gold"}, ("tier",)),
    ],
)
def test_override_field_shapes(fields, loc):
    """Seller and reason are non-empty; id and tier follow the naming patterns."""
    data = {**override(tier="gold"), **fields}
    assert {e[1] for e in errors(OverrideSpec, data)} == {loc}


@pytest.mark.parametrize(
    ("model", "data", "loc"),
    [
        (Metadata, {"name": "Marketplace"}, ("name",)),
        (Metadata, {"name": "m", "labels": {"Owner": "x"}}, ("labels", "Owner", "[key]")),
        (TierSpec, {"name": "gold.plus"}, ("name",)),
        (
            TiersSpec,
            {"tiers": [{"name": "a"}], "features": {"Bulk": {"from": "a"}}},
            ("features", "Bulk", "[key]"),
        ),
        (ContextSpec, {"attributes": {"Seller": "int"}}, ("attributes", "Seller", "[key]")),
    ],
)
def test_names_follow_the_patterns(model, data, loc):
    """Document, tier, feature, label and attribute names are lowercase identifiers."""
    assert [e[:2] for e in errors(model, data)] == [("string_pattern_mismatch", loc)]


def test_dotted_names_are_allowed_for_features_and_documents():
    """Feature and document names may be dotted or dashed (tier names may not, see above)."""
    spec = TiersSpec.model_validate(
        {"tiers": [{"name": "a"}], "features": {"listing.bulk-upload": {"from": "a"}}}
    )
    assert list(spec.features) == ["listing.bulk-upload"]
    assert Metadata.model_validate({"name": "market-tiers.v2"}).name == "market-tiers.v2"


def test_tiers_spec_defaults_and_bounds():
    """A Tiers spec needs 1 to 64 tiers; features, limits and overrides default to empty."""
    spec = TiersSpec.model_validate({"tiers": [{"name": "a"}]})
    assert (spec.features, spec.limits, spec.progression, spec.overrides) == ({}, {}, None, [])
    assert [e[:2] for e in errors(TiersSpec, {"tiers": []})] == [("too_short", ("tiers",))]
    many = [{"name": f"t{i}"} for i in range(65)]
    assert [e[:2] for e in errors(TiersSpec, {"tiers": many})] == [("too_long", ("tiers",))]


def test_context_attributes_are_type_names_or_objects():
    """Context attributes are type names or nested mappings (checked later); numbers are not."""
    spec = ContextSpec.model_validate({"attributes": {"metrics": {"orders": "int"}, "flag": "bool"}})
    assert spec.attributes == {"metrics": {"orders": "int"}, "flag": "bool"}
    assert {e[1] for e in errors(ContextSpec, {"attributes": {"flag": 5}})} == {
        ("attributes", "flag", "str"),
        ("attributes", "flag", "dict[str,any]"),
    }


def test_strict_types_do_not_coerce():
    """Strict fields do not coerce: 'yes' is not a boolean and '30' is not a number of days."""
    assert errors(FeatureSpec, {"from": "a", "enabled": "yes"})[0][:2] == ("bool_type", ("enabled",))
    bad = {"rules": {"a": {"when": "true"}}, "window_days": "30"}
    assert errors(ProgressionSpec, bad)[0][:2] == ("int_type", ("window_days",))


def test_expression_and_description_lengths():
    """Conditions are 1 to 4,096 characters and descriptions at most 2,000."""
    assert errors(ProgressionRuleSpec, {"when": ""})[0][:2] == ("string_too_short", ("when",))
    assert errors(ProgressionRuleSpec, {"when": "x" * 4097})[0][:2] == ("string_too_long", ("when",))
    assert errors(TierSpec, {"name": "a", "description": "d" * 2001})[0][:2] == (
        "string_too_long",
        ("description",),
    )
