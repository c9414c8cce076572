"""Decisions: the frozen answers the engine gives, each explaining itself.

A decision carries the outcome, a reason code in the spirit of OpenFeature's resolution
reasons, the rule that decided (by name and by position in the policy files), the policy
version, a one-line message for humans and, when asked for, the trace of what was tried.
Decisions are plain values: equal inputs give equal decisions, and they may be shared.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from .cel._values import format_duration

if TYPE_CHECKING:
    from collections.abc import Mapping


class Reason(enum.StrEnum):
    """Why a decision came out the way it did."""

    TIER_MATCH = "TIER_MATCH"
    """The seller's tier grants the feature (or sets the limit)."""
    TIER_BELOW_MINIMUM = "TIER_BELOW_MINIMUM"
    """The seller's tier is below the feature's minimum tier."""
    TIER_NOT_LISTED = "TIER_NOT_LISTED"
    """The feature lists its tiers explicitly and the seller's is not one of them."""
    CONDITION_FALSE = "CONDITION_FALSE"
    """The feature's condition evaluated to false for this context."""
    CONDITION_ERROR = "CONDITION_ERROR"
    """A condition could not be evaluated (missing attribute, wrong type): the feature
    is denied; in tier qualification, the current tier is kept rather than lowered."""
    ROLLOUT_EXCLUDED = "ROLLOUT_EXCLUDED"
    """The seller's rollout bucket is outside the feature's rollout percentage."""
    DISABLED = "DISABLED"
    """The feature is switched off for everyone (``enabled: false``)."""
    OVERRIDE = "OVERRIDE"
    """A per-seller override decided."""
    CONDITION_MATCH = "CONDITION_MATCH"
    """The seller's tier grants the feature and its condition holds."""
    ROLLOUT_INCLUDED = "ROLLOUT_INCLUDED"
    """The seller's tier grants the feature, any condition holds, and the seller's
    rollout bucket is inside the feature's rollout percentage."""
    QUALIFIED = "QUALIFIED"
    """Tier qualification: the metrics meet the tier's progression rule."""
    FLOOR = "FLOOR"
    """Tier qualification: no rule holds, so the lowest tier applies."""


class Action(enum.StrEnum):
    """What tier qualification says should happen to the seller's tier."""

    KEEP = "keep"
    UPGRADE = "upgrade"
    DOWNGRADE_PENDING = "downgrade_pending"
    DOWNGRADE = "downgrade"


@dataclasses.dataclass(frozen=True, slots=True)
class TraceStep:
    """One step the engine took on the way to a decision.

    Attributes:
        step: What was tried: ``override``, ``enabled``, ``tier``, ``condition``,
            ``rollout``, ``limit``, ``progression``, ``grace``.
        outcome: ``pass``, ``fail``, ``skip``, ``error`` or ``decide``.
        detail: A human-readable explanation.
        rule: The rule involved, if any.
    """

    step: str
    outcome: Literal["pass", "fail", "skip", "error", "decide"]
    detail: str
    rule: str | None = None

    def to_json(self) -> dict[str, object]:
        """Return the JSON form of this step."""
        return {
            "step": self.step,
            "outcome": self.outcome,
            "detail": self.detail,
            "rule": self.rule,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class FeatureDecision:
    """Whether a seller may use a feature.

    Attributes:
        feature: The feature asked about.
        allowed: The outcome.
        reason: Why.
        rule: The rule that decided, e.g. ``feature:bulk_upload`` or ``override:2``.
        source: Where that rule is, ``FILE:LINE:COL`` relative to the policy directory.
        tier: The seller's effective tier (after tier overrides).
        policy_version: The version of the policy set that decided.
        message: A one-line explanation for humans.
        trace: The steps tried, when a trace was requested; empty otherwise.
    """

    feature: str
    allowed: bool
    reason: Reason
    rule: str
    source: str
    tier: str
    policy_version: str
    message: str
    trace: tuple[TraceStep, ...] = ()

    @property
    def outcome(self) -> Literal["allow", "deny"]:
        """``allow`` or ``deny``."""
        return "allow" if self.allowed else "deny"

    def to_json(self) -> dict[str, object]:
        """Return the JSON form used by ``tierpolicy eval`` and the HTTP API."""
        return {
            "feature": self.feature,
            "outcome": self.outcome,
            "allowed": self.allowed,
            "reason": self.reason.value,
            "rule": self.rule,
            "source": self.source,
            "tier": self.tier,
            "policy_version": self.policy_version,
            "message": self.message,
            "trace": [step.to_json() for step in self.trace],
        }


@dataclasses.dataclass(frozen=True, slots=True)
class LimitDecision:
    """A numeric limit for a seller.

    Attributes:
        limit: The limit asked about.
        value: The limit, or ``None`` when unlimited.
        unit: The limit's unit as declared (may be empty).
        reason: ``TIER_MATCH`` or ``OVERRIDE``.
        rule: The rule that decided.
        source: Where that rule is.
        tier: The seller's effective tier.
        policy_version: The version of the policy set that decided.
        message: A one-line explanation for humans.
        trace: The steps tried, when requested.
    """

    limit: str
    value: int | None
    unit: str
    reason: Reason
    rule: str
    source: str
    tier: str
    policy_version: str
    message: str
    trace: tuple[TraceStep, ...] = ()

    @property
    def unlimited(self) -> bool:
        """Whether there is no limit."""
        return self.value is None

    def allows(self, amount: int) -> bool:
        """Whether ``amount`` stays within the limit (inclusive)."""
        return self.value is None or amount <= self.value

    def to_json(self) -> dict[str, object]:
        """Return the JSON form used by ``tierpolicy eval`` and the HTTP API."""
        return {
            "limit": self.limit,
            "value": "unlimited" if self.value is None else self.value,
            "unlimited": self.value is None,
            "unit": self.unit,
            "reason": self.reason.value,
            "rule": self.rule,
            "source": self.source,
            "tier": self.tier,
            "policy_version": self.policy_version,
            "message": self.message,
            "trace": [step.to_json() for step in self.trace],
        }


@dataclasses.dataclass(frozen=True, slots=True)
class MissingClause:
    """One clause of the next tier's rule that the seller's metrics do not meet.

    Attributes:
        clause: The clause's text, e.g. ``metrics.orders_60d >= 50``.
        attribute: The attribute compared, when the clause is a simple comparison.
        operator: The comparison operator, normalised so the attribute is on the left.
        expected: The threshold the attribute is compared with.
        actual: The seller's value, or ``None`` when missing.
        error: Why the clause could not be evaluated, if it could not.
    """

    clause: str
    attribute: str | None
    operator: str | None
    expected: object
    actual: object
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        """Return the JSON form of this clause."""
        return {
            "clause": self.clause,
            "attribute": self.attribute,
            "operator": self.operator,
            "expected": _jsonable(self.expected),
            "actual": _jsonable(self.actual),
            "error": self.error,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class TierDecision:
    """Which tier a seller's metrics qualify for, and what follows.

    Attributes:
        seller_id: The seller.
        current_tier: The tier the seller holds now (after tier overrides).
        qualified_tier: The highest tier whose progression rule the metrics meet.
        effective_tier: The tier the seller should hold after this evaluation.
        action: ``keep``, ``upgrade``, ``downgrade_pending`` or ``downgrade``.
        next_tier: The tier above ``effective_tier``, if any.
        missing: The clauses of ``next_tier``'s rule that are not met.
        keep_missing: For a pending or due downgrade, the clauses of the current tier's
            rule that are not met: what the seller must fix to keep the tier.
        downgrade_effective_at: When a pending downgrade takes effect (or took effect).
        reason: ``QUALIFIED``, ``FLOOR`` or ``OVERRIDE``.
        rule: The rule that decided.
        source: Where that rule is.
        policy_version: The version of the policy set that decided.
        message: A one-line explanation for humans.
        trace: The steps tried, when requested.
    """

    seller_id: str
    current_tier: str
    qualified_tier: str
    effective_tier: str
    action: Action
    next_tier: str | None
    missing: tuple[MissingClause, ...]
    keep_missing: tuple[MissingClause, ...]
    downgrade_effective_at: dt.datetime | None
    reason: Reason
    rule: str
    source: str
    policy_version: str
    message: str
    trace: tuple[TraceStep, ...] = ()

    def to_json(self) -> dict[str, object]:
        """Return the JSON form used by ``tierpolicy eval`` and the HTTP API."""
        return {
            "seller_id": self.seller_id,
            "current_tier": self.current_tier,
            "qualified_tier": self.qualified_tier,
            "effective_tier": self.effective_tier,
            "action": self.action.value,
            "next_tier": self.next_tier,
            "missing": [clause.to_json() for clause in self.missing],
            "keep_missing": [clause.to_json() for clause in self.keep_missing],
            "downgrade_effective_at": _jsonable(self.downgrade_effective_at),
            "reason": self.reason.value,
            "rule": self.rule,
            "source": self.source,
            "policy_version": self.policy_version,
            "message": self.message,
            "trace": [step.to_json() for step in self.trace],
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Entitlements:
    """Every feature and limit for one seller, from one policy version.

    Attributes:
        seller_id: The seller.
        tier: The seller's effective tier.
        features: Feature name to decision, in policy order.
        limits: Limit name to decision, in policy order.
        policy_version: The version of the policy set that decided.
    """

    seller_id: str
    tier: str
    features: Mapping[str, FeatureDecision]
    limits: Mapping[str, LimitDecision]
    policy_version: str

    def __post_init__(self) -> None:
        # Read-only views keep the frozen promise for the mappings too.
        object.__setattr__(self, "features", MappingProxyType(dict(self.features)))
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))

    @property
    def enabled_features(self) -> tuple[str, ...]:
        """Names of the features the seller may use, in policy order."""
        return tuple(name for name, d in self.features.items() if d.allowed)

    def to_json(self) -> dict[str, object]:
        """Return the JSON form used by ``tierpolicy eval`` and the HTTP API."""
        return {
            "seller_id": self.seller_id,
            "tier": self.tier,
            "policy_version": self.policy_version,
            "features": {name: d.to_json() for name, d in self.features.items()},
            "limits": {name: d.to_json() for name, d in self.limits.items()},
        }


def _jsonable(value: object) -> object:
    """Render CEL runtime values (timestamps, durations, bytes) for JSON."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.timedelta):
        return format_duration(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
