"""The compiled tiers model and the decisions it makes.

Everything that does not depend on the request is worked out at compile time: which
tiers get each feature, each limit's value per tier (inheritance resolved), and the
decisions that do not depend on the context, built once and shared. Evaluation then is
a few index lookups, plus a condition or a rollout hash where the policy asks for one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

from ._decisions import (
    Action,
    FeatureDecision,
    LimitDecision,
    MissingClause,
    Reason,
    TierDecision,
    TraceStep,
)
from ._exceptions import ConditionError
from ._rollout import BASIS_POINTS, rollout_bucket

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._overrides import Override
    from .cel import Program

Trace = list[TraceStep] | None


def iso(moment: dt.datetime) -> str:
    """Render a timestamp as RFC 3339 in UTC with a ``Z``, as decisions' JSON does."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


_END_OF_TIME = dt.datetime.max.replace(tzinfo=dt.UTC)


def _plus(moment: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """Add, saturating at the end of representable time instead of overflowing."""
    try:
        return moment + delta
    except OverflowError:
        return _END_OF_TIME


def activation(context: Mapping[str, object], program: Program, now: dt.datetime) -> Mapping[str, object]:
    """Return the variables a program sees: the context, plus ``now`` if it reads it."""
    return {**context, "now": now} if program.reads_now else context


_D = TypeVar("_D", FeatureDecision, LimitDecision, TierDecision)


def _finish(decision: _D, trace: Trace) -> _D:
    if trace is None:
        return decision
    return dataclasses.replace(decision, trace=tuple(trace))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CompiledFeature:
    """A feature with everything request-independent worked out."""

    name: str
    description: str
    rule: str
    source: str
    tiers: tuple[str, ...]
    grants: tuple[bool, ...]
    explicit_tiers: bool
    minimum: str | None
    condition: Program | None
    rollout_bp: int | None
    enabled: bool
    policy_version: str
    # Shared decisions, one per tier index, built only for outcomes the feature can have
    # (a feature without a condition never denies for one): building all five for every
    # feature would multiply the objects a large set holds.
    outcome: tuple[FeatureDecision, ...] = ()
    """Per tier: allowed (every gate passed) if the tier is granted, else denied for the tier."""
    deny_condition: tuple[FeatureDecision, ...] = ()
    deny_rollout: tuple[FeatureDecision, ...] = ()
    deny_disabled: tuple[FeatureDecision, ...] = ()
    static: tuple[FeatureDecision, ...] | None = None
    """Per tier, the decision when it needs no context (no condition, no rollout)."""
    plain_condition: bool = False
    """Enabled, with a condition and no partial rollout: the engine's second fast path."""
    needs_now: bool = False

    def __post_init__(self) -> None:
        def make(tier: str, reason: Reason, message: str, *, allowed: bool = False) -> FeatureDecision:
            return FeatureDecision(
                feature=self.name,
                allowed=allowed,
                reason=reason,
                rule=self.rule,
                source=self.source,
                tier=tier,
                policy_version=self.policy_version,
                message=message,
            )

        def granted_only(reason: Reason, message: str) -> tuple[FeatureDecision, ...]:
            # Tiers without the feature never pass the tier gate, so the later gates'
            # denials exist only for granted tiers; the others reuse the tier denial.
            return tuple(
                make(tier, reason, message) if granted else outcome[index]
                for index, (tier, granted) in enumerate(zip(self.tiers, self.grants, strict=True))
            )

        # Messages quote policy text (conditions may hold braces): f-strings, never str.format.
        has_rollout = self.rollout_bp is not None and self.rollout_bp < BASIS_POINTS
        percent = f"{(self.rollout_bp or 0) / 100:g}%"
        met = [
            *(["its condition holds"] if self.condition is not None else []),
            *([f"the seller is in its {percent} rollout"] if has_rollout else []),
        ]
        extra = f" and {' and '.join(met)}" if met else ""
        allow_reason = Reason.TIER_MATCH
        if self.condition is not None:
            allow_reason = Reason.CONDITION_MATCH
        if has_rollout:
            allow_reason = Reason.ROLLOUT_INCLUDED
        listed = ", ".join(t for t, g in zip(self.tiers, self.grants, strict=True) if g)
        outcome = tuple(
            make(tier, allow_reason, f"tier {tier} includes {self.name}{extra}", allowed=True)
            if granted
            else make(tier, Reason.TIER_NOT_LISTED, f"{self.name} is available only to tiers {listed}")
            if self.explicit_tiers
            else make(
                tier,
                Reason.TIER_BELOW_MINIMUM,
                f"{self.name} needs tier {self.minimum} or higher; the seller is {tier}",
            )
            for tier, granted in zip(self.tiers, self.grants, strict=True)
        )
        set_ = object.__setattr__
        set_(self, "outcome", outcome)
        if not self.enabled:
            message = f"{self.name} is switched off for everyone"
            set_(self, "deny_disabled", tuple(make(tier, Reason.DISABLED, message) for tier in self.tiers))
            set_(self, "static", self.deny_disabled)
        if self.condition is not None:
            message = f"the condition of {self.name} is not met: {self.condition.source}"
            set_(self, "deny_condition", granted_only(Reason.CONDITION_FALSE, message))
            set_(self, "needs_now", self.condition.reads_now)
        if has_rollout:
            message = f"the seller is outside the {percent} rollout of {self.name}"
            set_(self, "deny_rollout", granted_only(Reason.ROLLOUT_EXCLUDED, message))
        if self.enabled and self.condition is None and not has_rollout:
            set_(self, "static", outcome)
        set_(self, "plain_condition", self.enabled and self.condition is not None and not has_rollout)

    def decide(
        self,
        tier_index: int,
        context: Mapping[str, object],
        seller_id: str,
        now: dt.datetime,
        override: Override | None,
        trace: Trace,
    ) -> FeatureDecision:
        """Decide for one seller; the single implementation behind every feature check.

        Engines skip the call when :attr:`static` already holds the answer and there is
        no override or trace; that shortcut returns exactly what this would.
        """
        if not self.enabled:
            if trace is not None:
                trace.append(TraceStep("enabled", "fail", "the feature is switched off", self.rule))
            return (
                self.deny_disabled[tier_index]
                if trace is None
                else _finish(self.deny_disabled[tier_index], trace)
            )
        if override is not None:
            if trace is not None:
                trace.append(
                    TraceStep(
                        "override",
                        "decide",
                        f"{override.describe_value()}: {override.reason}",
                        override.rule,
                    )
                )
            return _finish(
                FeatureDecision(
                    feature=self.name,
                    allowed=bool(override.value),
                    reason=Reason.OVERRIDE,
                    rule=override.rule,
                    source=override.source,
                    tier=self.tiers[tier_index],
                    policy_version=self.policy_version,
                    message=f"override: {override.describe_value()} until"
                    f" {iso(override.expires_at)} ({override.reason})",
                ),
                trace,
            )
        if not self.grants[tier_index]:
            if trace is not None:
                trace.append(TraceStep("tier", "fail", self.outcome[tier_index].message, self.rule))
            return self.outcome[tier_index] if trace is None else _finish(self.outcome[tier_index], trace)
        if trace is not None:
            trace.append(TraceStep("tier", "pass", f"tier {self.tiers[tier_index]} is eligible", self.rule))
        condition = self.condition
        if condition is not None:
            try:
                holds = condition.evaluate({**context, "now": now} if self.needs_now else context)
            except ConditionError as exc:
                if trace is not None:
                    trace.append(TraceStep("condition", "error", str(exc), self.rule))
                return _finish(
                    FeatureDecision(
                        feature=self.name,
                        allowed=False,
                        reason=Reason.CONDITION_ERROR,
                        rule=self.rule,
                        source=self.source,
                        tier=self.tiers[tier_index],
                        policy_version=self.policy_version,
                        message=f"the condition of {self.name} could not be evaluated: {exc}",
                    ),
                    trace,
                )
            if holds is not True:
                if trace is not None:
                    failing = "; ".join(unmet_clauses(condition, context, now))
                    trace.append(
                        TraceStep("condition", "fail", f"{condition.source} is false: {failing}", self.rule)
                    )
                return (
                    self.deny_condition[tier_index]
                    if trace is None
                    else _finish(self.deny_condition[tier_index], trace)
                )
            if trace is not None:
                trace.append(TraceStep("condition", "pass", f"{condition.source} is true", self.rule))
        if self.rollout_bp is not None and self.rollout_bp < BASIS_POINTS:
            bucket = rollout_bucket(self.name, seller_id)
            if bucket >= self.rollout_bp:
                if trace is not None:
                    trace.append(
                        TraceStep(
                            "rollout",
                            "fail",
                            f"bucket {bucket} >= {self.rollout_bp} basis points",
                            self.rule,
                        )
                    )
                return (
                    self.deny_rollout[tier_index]
                    if trace is None
                    else _finish(self.deny_rollout[tier_index], trace)
                )
            if trace is not None:
                trace.append(
                    TraceStep(
                        "rollout",
                        "pass",
                        f"bucket {bucket} < {self.rollout_bp} basis points",
                        self.rule,
                    )
                )
        return self.outcome[tier_index] if trace is None else _finish(self.outcome[tier_index], trace)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CompiledLimit:
    """A limit with its value resolved for every tier."""

    name: str
    description: str
    unit: str
    rule: str
    source: str
    tiers: tuple[str, ...]
    values: tuple[int | None, ...]
    inherited_from: tuple[str, ...]
    policy_version: str
    decisions: tuple[LimitDecision, ...] = ()

    def __post_init__(self) -> None:
        decisions = []
        for index, tier in enumerate(self.tiers):
            value = self.values[index]
            shown = "unlimited" if value is None else f"{value}{' ' + self.unit if self.unit else ''}"
            origin = self.inherited_from[index]
            note = "" if origin == tier else f" (inherited from {origin})"
            decisions.append(
                LimitDecision(
                    limit=self.name,
                    value=value,
                    unit=self.unit,
                    reason=Reason.TIER_MATCH,
                    rule=self.rule,
                    source=self.source,
                    tier=tier,
                    policy_version=self.policy_version,
                    message=f"{self.name} for tier {tier} is {shown}{note}",
                )
            )
        object.__setattr__(self, "decisions", tuple(decisions))

    def decide(self, tier_index: int, override: Override | None, trace: Trace) -> LimitDecision:
        """Decide for one seller; the single implementation behind every limit lookup."""
        if override is None:
            if trace is None:
                return self.decisions[tier_index]
            trace.append(TraceStep("limit", "decide", self.decisions[tier_index].message, self.rule))
            return _finish(self.decisions[tier_index], trace)
        value = override.value
        assert not isinstance(value, bool)  # noqa: S101  Override validates limit values
        if trace is not None:
            trace.append(
                TraceStep(
                    "override",
                    "decide",
                    f"{override.describe_value()}: {override.reason}",
                    override.rule,
                )
            )
        return _finish(
            LimitDecision(
                limit=self.name,
                value=value,
                unit=self.unit,
                reason=Reason.OVERRIDE,
                rule=override.rule,
                source=override.source,
                tier=self.tiers[tier_index],
                policy_version=self.policy_version,
                message=f"override: {self.name} is {override.describe_value()} until"
                f" {iso(override.expires_at)} ({override.reason})",
            ),
            trace,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class CompiledRule:
    """The progression rule of one tier."""

    tier_index: int
    program: Program
    rule: str
    source: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CompiledProgression:
    """Progression rules by tier, and the downgrade grace period."""

    tiers: tuple[str, ...]
    rules: Mapping[int, CompiledRule]
    window_days: int
    grace: dt.timedelta
    rule: str
    source: str
    policy_version: str

    def qualify(
        self,
        seller_id: str,
        current_index: int,
        context: Mapping[str, object],
        now: dt.datetime,
        below_since: dt.datetime | None,
        tier_override: Override | None,
        trace: Trace,
    ) -> TierDecision:
        """Work out the qualified tier, the action, and what is missing for the next tier.

        A rule that cannot be evaluated (a metric missing from the context) counts as not
        met for upgrades, but never causes a downgrade: when a rule above the
        qualified tier errs and the metrics would otherwise lower the tier, the seller keeps
        the tier and the reason is CONDITION_ERROR.
        """
        qualified_index, decided_by, errors = self._qualified(context, now, trace)
        qualified = self.tiers[qualified_index]
        current = self.tiers[current_index]
        downgrade_at: dt.datetime | None = None
        # Any unevaluable rule above the qualified tier might have held: never lower the
        # tier on a guess (a missing metric is a caller bug, not a seller's failure).
        uncertain = (
            [index for index in errors if index > qualified_index] if current_index > qualified_index else []
        )
        if tier_override is not None:
            action, effective_index = Action.KEEP, current_index
            reason, rule, source = Reason.OVERRIDE, tier_override.rule, tier_override.source
            message = (
                f"tier {current} is fixed by an override until {iso(tier_override.expires_at)}"
                f" ({tier_override.reason})"
            )
            if trace is not None:
                trace.append(TraceStep("override", "decide", message, tier_override.rule))
        elif uncertain:
            action, effective_index = Action.KEEP, current_index
            erring = self.rules[uncertain[0]]
            reason, rule, source = Reason.CONDITION_ERROR, erring.rule, erring.source
            message = (
                f"the rule for {self.tiers[uncertain[0]]} could not be evaluated"
                f" ({errors[uncertain[0]]}); {current} is kept rather than downgraded"
            )
        else:
            reason = Reason.QUALIFIED if decided_by is not None else Reason.FLOOR
            rule = decided_by.rule if decided_by is not None else self.rule
            source = decided_by.source if decided_by is not None else self.source
            if qualified_index > current_index:
                action, effective_index = Action.UPGRADE, qualified_index
                message = f"metrics qualify for {qualified}: upgrade from {current}"
            elif qualified_index == current_index:
                action, effective_index = Action.KEEP, current_index
                message = f"metrics qualify for {qualified}: keep {current}"
            else:
                downgrade_at = _plus(below_since or now, self.grace)
                if now >= downgrade_at:
                    action, effective_index = Action.DOWNGRADE, qualified_index
                    message = (
                        f"metrics qualify only for {qualified}; the grace period ended at"
                        f" {iso(downgrade_at)}: downgrade from {current}"
                    )
                else:
                    action, effective_index = Action.DOWNGRADE_PENDING, current_index
                    message = (
                        f"metrics qualify only for {qualified}; {current} is kept until {iso(downgrade_at)}"
                    )
                if trace is not None:
                    trace.append(TraceStep("grace", "decide", message, self.rule))
        next_index = effective_index + 1
        next_tier = self.tiers[next_index] if next_index < len(self.tiers) else None
        missing = self._missing(next_index, context, now) if next_tier is not None else ()
        keep_missing = (
            self._missing(current_index, context, now)
            if action in {Action.DOWNGRADE_PENDING, Action.DOWNGRADE}
            else ()
        )
        decision = TierDecision(
            seller_id=seller_id,
            current_tier=current,
            qualified_tier=qualified,
            effective_tier=self.tiers[effective_index],
            action=action,
            next_tier=next_tier,
            missing=missing,
            keep_missing=keep_missing,
            downgrade_effective_at=downgrade_at,
            reason=reason,
            rule=rule,
            source=source,
            policy_version=self.policy_version,
            message=message,
        )
        return _finish(decision, trace)

    def _qualified(
        self, context: Mapping[str, object], now: dt.datetime, trace: Trace
    ) -> tuple[int, CompiledRule | None, dict[int, str]]:
        errors: dict[int, str] = {}
        for index in sorted(self.rules, reverse=True):
            compiled = self.rules[index]
            try:
                holds = compiled.program.evaluate(activation(context, compiled.program, now)) is True
            except ConditionError as exc:
                errors[index] = str(exc)
                if trace is not None:
                    trace.append(
                        TraceStep("progression", "error", f"{self.tiers[index]}: {exc}", compiled.rule)
                    )
                continue
            if trace is not None:
                trace.append(
                    TraceStep(
                        "progression",
                        "pass" if holds else "fail",
                        f"{self.tiers[index]}: {compiled.program.source}",
                        compiled.rule,
                    )
                )
            if holds:
                return index, compiled, errors
        return 0, None, errors

    def _missing(
        self, index: int, context: Mapping[str, object], now: dt.datetime
    ) -> tuple[MissingClause, ...]:
        compiled = self.rules.get(index)
        if compiled is None:
            return ()
        missing = []
        for clause in compiled.program.clauses:
            error: str | None = None
            try:
                holds = clause.program.evaluate(activation(context, clause.program, now)) is True
            except ConditionError as exc:
                holds, error = False, str(exc)
            if holds:
                continue
            missing.append(
                MissingClause(
                    clause=clause.source,
                    attribute=clause.attribute,
                    operator=clause.operator,
                    expected=clause.value,
                    actual=lookup(context, clause.attribute) if clause.attribute else None,
                    error=error,
                )
            )
        return tuple(missing)


def unmet_clauses(program: Program, context: Mapping[str, object], now: dt.datetime) -> list[str]:
    """Explain which top-level clauses of a condition do not hold, with the actual values."""
    reasons = []
    for clause in program.clauses:
        try:
            holds = clause.program.evaluate(activation(context, clause.program, now)) is True
        except ConditionError as exc:
            reasons.append(f"{clause.source} could not be evaluated ({exc})")
            continue
        if not holds:
            actual = (
                f" ({clause.attribute} is {lookup(context, clause.attribute)!r})" if clause.attribute else ""
            )
            reasons.append(f"{clause.source} is false{actual}")
    return reasons


def lookup(context: Mapping[str, object], dotted: str) -> object:
    """Return the context value at a dotted path, or ``None`` when absent."""
    node: object = context
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TierModel:
    """Everything the tiers document compiles to."""

    tiers: tuple[str, ...]
    index: Mapping[str, int]
    features: Mapping[str, CompiledFeature]
    limits: Mapping[str, CompiledLimit]
    progression: CompiledProgression | None
    overrides: tuple[Override, ...]
    overrides_by_seller: Mapping[str, tuple[Override, ...]]


def active_overrides(
    policy: Sequence[Override], request: Sequence[Override], seller_id: str, now: dt.datetime
) -> dict[tuple[str, str], Override]:
    """Apply the merge rule: per target, the last active override wins."""
    chosen: dict[tuple[str, str], Override] = {}
    for source in (policy, request):
        for override in source:
            if override.seller_id == seller_id and override.active_at(now):
                chosen[(override.kind, override.target)] = override
    return chosen
