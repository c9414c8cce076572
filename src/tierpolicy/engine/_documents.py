"""Pydantic models of the policy document kinds.

Every document is an envelope with ``apiVersion``, ``kind``, ``metadata`` and ``spec``;
the kind picks the model of ``spec`` (see :mod:`._kinds`). Unknown keys are errors
everywhere. This module holds the shared base and the Context and Tiers kinds.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from ._exceptions import ConditionError
from .cel import _values as cel_values

API_VERSION = "tierpolicy/v1"
"""The only document format version this release reads."""

NAME_PATTERN = r"^[a-z][a-z0-9_]*(?:[.-][a-z0-9_]+)*$"
TIER_PATTERN = r"^[a-z][a-z0-9_]*$"

Name = Annotated[StrictStr, Field(pattern=NAME_PATTERN, max_length=128)]
TierName = Annotated[StrictStr, Field(pattern=TIER_PATTERN, max_length=64)]
Expression = Annotated[StrictStr, Field(min_length=1, max_length=4096)]
Description = Annotated[StrictStr, Field(max_length=2000)]
Unlimited = Literal["unlimited"]
LimitValue: TypeAlias = Annotated[StrictInt, Field(ge=0)] | Unlimited


def _timestamp_text(value: object) -> object:
    # Lax datetime parsing would read 2027 or "1830297600" as seconds after 1970: accept
    # RFC 3339 text only, parsed exactly as conditions parse timestamps.
    if isinstance(value, str):
        try:
            return cel_values.parse_timestamp(value)
        except ConditionError:
            pass
    msg = "expected an RFC 3339 timestamp with a timezone, such as 2026-12-31T00:00:00Z"
    raise ValueError(msg)


Timestamp = Annotated[dt.datetime, BeforeValidator(_timestamp_text), Field(strict=False)]


class SpecModel(BaseModel):
    """Base of every document model: unknown keys rejected, frozen, strict types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=False)


class Metadata(SpecModel):
    """Identifies a document inside its policy set."""

    name: Name
    description: Description = ""
    labels: dict[Name, StrictStr] = Field(default_factory=dict)


# --------------------------------------------------------------------------- Context


class ContextSpec(SpecModel):
    """Declares the attributes that conditions may read.

    Leaves are CEL type names (``bool``, ``int``, ``double``, ``string``, ``timestamp``,
    ``duration``, ``list<string>``, ``map<string, int>``, ``dyn``); a nested mapping
    declares an object with known fields.
    """

    # Nested declarations are checked while compiling, where type names are parsed too;
    # a recursive pydantic type would only say "invalid" without naming the CEL type.
    attributes: dict[Annotated[StrictStr, Field(pattern=TIER_PATTERN)], StrictStr | dict[str, Any]]


# --------------------------------------------------------------------------- Tiers


class TierSpec(SpecModel):
    """One tier, in ascending order within the ``tiers`` list."""

    name: TierName
    description: Description = ""


class FeatureSpec(SpecModel):
    """A gated feature.

    Exactly one of ``from`` (this tier and every higher one) and ``tiers`` (exactly these
    tiers, for deliberately non-monotone features) says which tiers get the feature.
    """

    # Editors learn the "exactly one of" rule from the schema as well.
    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["from"]}, {"required": ["tiers"]}]})

    description: Description = ""
    from_: TierName | None = Field(default=None, alias="from")
    tiers: list[TierName] | None = Field(default=None, min_length=1)
    when: Expression | None = None
    rollout: Annotated[float, Field(ge=0, le=100)] | None = None
    enabled: StrictBool = True

    @model_validator(mode="after")
    def _one_tier_rule(self) -> FeatureSpec:
        if (self.from_ is None) == (self.tiers is None):
            msg = "give exactly one of 'from' (a minimum tier) and 'tiers' (a list of tiers)"
            raise ValueError(msg)
        return self

    @field_validator("rollout")
    @classmethod
    def _basis_points(cls, value: float | None) -> float | None:
        # Compare in decimal: 0.29 * 100 is 28.999999999999996 in binary floating point.
        if value is not None and round(value, 2) != value:
            msg = "rollout is a percentage with at most two decimals, e.g. 12.5"
            raise ValueError(msg)
        return value


class LimitSpec(SpecModel):
    """A numeric limit per tier; a tier without a value inherits the next lower tier's."""

    description: Description = ""
    unit: StrictStr = ""
    values: dict[TierName, LimitValue] = Field(min_length=1)


class ProgressionRuleSpec(SpecModel):
    """The condition a seller's metrics must meet to qualify for a tier."""

    when: Expression
    description: Description = ""


class ProgressionSpec(SpecModel):
    """How sellers move between tiers from their metrics."""

    window_days: Annotated[StrictInt, Field(ge=1, le=3660)] = 60
    grace_period_days: Annotated[StrictInt, Field(ge=0, le=3660)] = 0
    rules: dict[TierName, ProgressionRuleSpec] = Field(min_length=1)


class OverrideSpec(SpecModel):
    """A per-seller exception with a reason and an expiry.

    Exactly one of ``feature``, ``limit`` and ``tier`` names the target. ``id`` gives the
    override a stable rule id in decisions (``override:<id>``); without it the rule id is
    its position in the list, which changes when overrides are inserted above it.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [{"required": ["feature"]}, {"required": ["limit"]}, {"required": ["tier"]}]
        }
    )

    id: Name | None = None
    seller: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    feature: Name | None = None
    limit: Name | None = None
    tier: TierName | None = None
    value: StrictBool | LimitValue | None = None
    reason: Annotated[StrictStr, Field(min_length=1, max_length=2000)]
    expires: Timestamp
    starts: Timestamp | None = None
    author: StrictStr = ""

    @model_validator(mode="after")
    def _one_target(self) -> OverrideSpec:
        targets = [t for t in (self.feature, self.limit, self.tier) if t is not None]
        if len(targets) != 1:
            msg = "an override names exactly one of 'feature', 'limit' and 'tier'"
            raise ValueError(msg)
        if self.feature is not None and not isinstance(self.value, bool):
            msg = "a feature override needs 'value: true' or 'value: false'"
            raise ValueError(msg)
        if self.limit is not None and (isinstance(self.value, bool) or self.value is None):
            msg = "a limit override needs 'value:' a whole number or 'unlimited'"
            raise ValueError(msg)
        if self.tier is not None and self.value is not None:
            msg = "a tier override takes no 'value' (the tier is the value)"
            raise ValueError(msg)
        if self.starts is not None and self.starts >= self.expires:
            msg = "'starts' must be before 'expires', or the override never applies"
            raise ValueError(msg)
        return self


class TiersSpec(SpecModel):
    """The tiers kind: tier order, features, limits, progression and overrides."""

    tiers: list[TierSpec] = Field(min_length=1, max_length=64)
    features: dict[Name, FeatureSpec] = Field(default_factory=dict)
    limits: dict[Name, LimitSpec] = Field(default_factory=dict)
    progression: ProgressionSpec | None = None
    overrides: list[OverrideSpec] = Field(default_factory=list)
