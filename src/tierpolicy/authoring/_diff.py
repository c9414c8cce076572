"""A semantic diff of two compiled policy sets, each change classified loosen, tighten or neutral.

The diff compares what the sets *decide*, not their text: features per tier (inheritance
from ``from:`` resolved), limit values per tier (inherited values resolved, ``unlimited``
the highest), progression clauses by the attribute they bound, the error registry and
the classification rules, resilience parameters per operation pattern, and rate-limit
windows per tier. Comments, key order, formatting and descriptions do not show.

Every change says which way it moves the policy for the people it governs:

* **loosen**: sellers and callers get more (a feature, a higher limit or rate, an easier
  tier, more retries, a breaker that trips later);
* **tighten**: they get less;
* **neutral**: neither can be said in general (a changed condition text, a new error
  code, a reordered rule list): a person has to read it.

The rules are listed in ``docs/diff.md``. The diff of B against A is the mirror image of
the diff of A against B: every change appears with before and after swapped and loosen
and tighten swapped.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from tierpolicy.engine._classification import CompiledErrorRule, ErrorModel, ErrorsSpec
from tierpolicy.engine._ratelimits import RateLimitsModel
from tierpolicy.engine._resilience import (
    DEFAULT_RECORD_CATEGORIES,
    BreakerPolicy,
    BudgetPolicy,
    BulkheadPolicy,
    OperationPolicy,
    ResilienceModel,
    RetryPolicy,
)
from tierpolicy.engine._rollout import BASIS_POINTS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from tierpolicy.engine._gcra import GcraWindow
    from tierpolicy.engine._policyset import PolicySet
    from tierpolicy.engine._ratelimits import RateLimitPolicy
    from tierpolicy.engine._tiers import CompiledFeature, CompiledLimit, CompiledProgression, TierModel
    from tierpolicy.engine.cel import Program
    from tierpolicy.engine.cel._program import Clause

__all__ = [
    "SECTIONS",
    "SECTION_TITLES",
    "Change",
    "Effect",
    "PolicyDiff",
    "Summary",
    "diff_sets",
    "inline_code",
    "match_text",
    "render_markdown",
    "render_text",
]

Effect = Literal["loosen", "tighten", "neutral"]
Summary = Literal["loosen", "tighten", "both", "neither"]
Section = Literal[
    "tiers", "features", "limits", "progression", "errors", "classification", "resilience", "ratelimits"
]
SECTIONS: tuple[Section, ...] = (
    "tiers",
    "features",
    "limits",
    "progression",
    "errors",
    "classification",
    "resilience",
    "ratelimits",
)
"""The sections of a diff, in the order they are shown."""

_T = TypeVar("_T")
_V = TypeVar("_V")

_FLIP: dict[Effect, Effect] = {"loosen": "tighten", "tighten": "loosen", "neutral": "neutral"}


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One semantic change.

    Attributes:
        section: Which part of the set changed (one of :data:`SECTIONS`).
        subject: What changed: a feature, limit, tier, error code, rule, operation
            pattern or rate limit name.
        aspect: Which part of the subject: ``tier gold``, ``condition``, ``status``,
            ``retry.max_attempts`` ...
        before: The old value as text, ``None`` when the subject or aspect is new.
        after: The new value as text, ``None`` when it was removed.
        effect: ``loosen``, ``tighten`` or ``neutral``.
        why: The rule that gave the effect, in a few words (``raised``, ``gained`` ...).
    """

    section: Section
    subject: str
    aspect: str
    before: str | None
    after: str | None
    effect: Effect
    why: str

    @property
    def kind(self) -> Literal["added", "removed", "changed"]:
        """``added`` (no before), ``removed`` (no after) or ``changed``."""
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed"

    def to_json(self) -> dict[str, object]:
        """Return the JSON form used by ``tierpolicy diff --format json``."""
        return {
            "section": self.section,
            "subject": self.subject,
            "aspect": self.aspect,
            "change": self.kind,
            "before": self.before,
            "after": self.after,
            "effect": self.effect,
            "why": self.why,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyDiff:
    """The semantic diff of two policy sets.

    Attributes:
        old: A label for the old set (its directory, or ``git:REV``).
        new: A label for the new set.
        old_version: The old set's policy version.
        new_version: The new set's policy version.
        changes: Every change, by section (in :data:`SECTIONS` order), then subject.
    """

    old: str
    new: str
    old_version: str
    new_version: str
    changes: tuple[Change, ...]

    def count(self, effect: Effect) -> int:
        """How many changes have ``effect``."""
        return sum(change.effect == effect for change in self.changes)

    @property
    def summary(self) -> Summary:
        """Whether the change only loosens, only tightens, does ``both``, or ``neither``."""
        loosens, tightens = self.count("loosen") > 0, self.count("tighten") > 0
        if loosens and tightens:
            return "both"
        if loosens:
            return "loosen"
        return "tighten" if tightens else "neither"

    def to_json(self) -> dict[str, object]:
        """Return the JSON form used by ``tierpolicy diff --format json``."""
        return {
            "old": {"label": self.old, "version": self.old_version},
            "new": {"label": self.new, "version": self.new_version},
            "summary": self.summary,
            "counts": {effect: self.count(effect) for effect in ("loosen", "tighten", "neutral")},
            "changes": [change.to_json() for change in self.changes],
        }


def diff_sets(
    old: PolicySet, new: PolicySet, *, old_label: str = "old", new_label: str = "new"
) -> PolicyDiff:
    """Compare two compiled policy sets.

    Args:
        old: The set before the change.
        new: The set after it.
        old_label: How to name the old set in the output.
        new_label: How to name the new set in the output.

    Returns:
        The diff; empty when the sets decide alike in every compared respect.
    """
    out = _Changes()
    _diff_tiers(out, old.tiers, new.tiers)
    _diff_errors(out, old, new)
    _diff_resilience(
        out, _model(old, "Resilience", ResilienceModel), _model(new, "Resilience", ResilienceModel)
    )
    _diff_ratelimits(
        out,
        _model(old, "RateLimits", RateLimitsModel),
        _model(new, "RateLimits", RateLimitsModel),
        _common_tiers(old.tiers, new.tiers),
    )
    order = {section: index for index, section in enumerate(SECTIONS)}
    # A stable sort keeps each subject's aspects in the order they were found.
    changes = sorted(out.items, key=lambda c: (order[c.section], c.subject))
    return PolicyDiff(old_label, new_label, old.version, new.version, tuple(changes))


def _model(policy_set: PolicySet, kind: str, cls: type[_T]) -> _T | None:
    model = policy_set.model(kind)
    return model if isinstance(model, cls) else None


# --------------------------------------------------------------------------- collecting


class _Changes:
    """Collects changes; every helper here is antisymmetric in (before, after)."""

    def __init__(self) -> None:
        self.items: list[Change] = []

    def add(
        self,
        section: Section,
        subject: str,
        aspect: str,
        before: str | None,
        after: str | None,
        effect: Effect,
        why: str,
    ) -> None:
        self.items.append(Change(section, subject, aspect, before, after, effect, why))

    def presence(
        self,
        section: Section,
        subject: str,
        aspect: str,
        before: str | None,
        after: str | None,
        *,
        adding: Effect = "neutral",
    ) -> None:
        """Something exists on one side only; ``adding`` is the effect of it appearing."""
        if before is None and after is not None:
            self.add(section, subject, aspect, None, after, adding, "added")
        elif after is None and before is not None:
            self.add(section, subject, aspect, before, None, _FLIP[adding], "removed")

    def ordered(
        self,
        section: Section,
        subject: str,
        aspect: str,
        before: _V,
        after: _V,
        *,
        up: Effect,
        show: Callable[[_V], str] = str,
        rank: Callable[[_V], Any] | None = None,
    ) -> None:
        """A value on a scale: raising it has effect ``up``, lowering it the opposite."""
        if before == after:
            return
        key: Callable[[_V], Any] = rank or _infinite_none
        low, high = key(before), key(after)
        if high > low:
            self.add(section, subject, aspect, show(before), show(after), up, "raised")
        elif high < low:
            self.add(section, subject, aspect, show(before), show(after), _FLIP[up], "lowered")
        else:
            self.add(section, subject, aspect, show(before), show(after), "neutral", "changed")

    def flag(
        self,
        section: Section,
        subject: str,
        aspect: str,
        before: bool,  # noqa: FBT001  the switch's two positions
        after: bool,  # noqa: FBT001  as above
        *,
        on: Effect,
    ) -> None:
        """A switch: turning it on has effect ``on``."""
        if before != after:
            effect = on if after else _FLIP[on]
            self.add(
                section,
                subject,
                aspect,
                _yes(before),
                _yes(after),
                effect,
                "turned on" if after else "turned off",
            )

    def text(
        self, section: Section, subject: str, aspect: str, before: str | None, after: str | None
    ) -> None:
        """A value whose change has no direction (a key expression, a category)."""
        if before != after:
            self.add(section, subject, aspect, before or "none", after or "none", "neutral", "changed")

    def members(
        self,
        section: Section,
        subject: str,
        aspect: str,
        before: frozenset[str] | None,
        after: frozenset[str] | None,
        *,
        more: Effect,
        default: str = "none",
    ) -> None:
        """A set: growing it has effect ``more``, shrinking it the opposite, else neutral."""
        if before == after:
            return

        def show(members: frozenset[str] | None) -> str:
            return default if members is None else ", ".join(sorted(members)) or "none"

        effect: Effect = "neutral"
        why = "changed"
        if before is not None and after is not None:
            if after > before:
                effect, why = more, "widened"
            elif after < before:
                effect, why = _FLIP[more], "narrowed"
        self.add(section, subject, aspect, show(before), show(after), effect, why)


def _infinite_none(value: object) -> float:
    # Where a bound is optional, no bound is the highest: unlimited, no deadline.
    return math.inf if value is None else float(value)  # type: ignore[arg-type]


def _yes(value: bool) -> str:  # noqa: FBT001  a plain rendering helper
    return "yes" if value else "no"


# --------------------------------------------------------------------------- rendering values


def seconds(value: float | None, *, none: str = "none") -> str:
    """Render a duration in seconds the way policies write them (``200ms``, ``2s``, ``2m``)."""
    if value is None or math.isinf(value):
        return none
    if value < 1:
        return f"{value * 1000:g}ms"
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


def _number(value: float) -> str:
    return f"{value:g}"


def _percent(value: float) -> str:
    return f"{value:g}%"


_PERIODS = {1: "s", 60: "minute", 3600: "hour", 86400: "day"}


def rate(window: GcraWindow) -> str:
    """Render a window's rate as ``60/minute`` or ``5/10s``."""
    return f"{window.quota}/{_PERIODS.get(window.period, f'{window.period}s')}"


def _same_text(program: Program | None) -> str | None:
    # Whitespace outside the tokens does not change a condition; folded YAML blocks
    # (`>-`) and re-indentation would otherwise show as changes.
    return None if program is None else " ".join(program.source.split())


# --------------------------------------------------------------------------- tiers


def _common_tiers(old: TierModel | None, new: TierModel | None) -> tuple[str, ...]:
    if old is None or new is None:
        return ()
    return tuple(t for t in new.tiers if t in old.index)


def _diff_tiers(out: _Changes, old: TierModel | None, new: TierModel | None) -> None:
    old_tiers = old.tiers if old is not None else ()
    new_tiers = new.tiers if new is not None else ()
    for tier in new_tiers:
        if tier not in old_tiers:
            out.presence("tiers", tier, "tier", None, f"position {new_tiers.index(tier) + 1}")
    for tier in old_tiers:
        if tier not in new_tiers:
            out.presence("tiers", tier, "tier", f"position {old_tiers.index(tier) + 1}", None)
    common_old = [t for t in old_tiers if t in new_tiers]
    common_new = [t for t in new_tiers if t in old_tiers]
    if common_old != common_new:
        out.text("tiers", "ladder", "order", ", ".join(common_old), ", ".join(common_new))
    common = _common_tiers(old, new)
    features_old = old.features if old is not None else {}
    features_new = new.features if new is not None else {}
    for name in sorted({*features_old, *features_new}):
        _diff_feature(out, name, features_old.get(name), features_new.get(name), common)
    limits_old = old.limits if old is not None else {}
    limits_new = new.limits if new is not None else {}
    for name in sorted({*limits_old, *limits_new}):
        _diff_limit(out, name, limits_old.get(name), limits_new.get(name), common)
    _diff_progression(
        out,
        old.progression if old is not None else None,
        new.progression if new is not None else None,
        common,
    )


def _granted(feature: CompiledFeature | None, tier: str) -> bool:
    if feature is None or tier not in feature.tiers:
        return False
    return feature.grants[feature.tiers.index(tier)]


def _grants_text(feature: CompiledFeature) -> str:
    listed = [t for t, granted in zip(feature.tiers, feature.grants, strict=True) if granted]
    return "tiers " + ", ".join(listed) if listed else "no tier"


def _rollout(feature: CompiledFeature) -> int:
    return BASIS_POINTS if feature.rollout_bp is None else feature.rollout_bp


def _diff_feature(
    out: _Changes, name: str, old: CompiledFeature | None, new: CompiledFeature | None, tiers: Sequence[str]
) -> None:
    out.presence(
        "features",
        name,
        "feature",
        _grants_text(old) if old is not None else None,
        _grants_text(new) if new is not None else None,
    )
    for tier in tiers:
        before, after = _granted(old, tier), _granted(new, tier)
        if before != after:
            out.add(
                "features",
                name,
                f"tier {tier}",
                "granted" if before else "not granted",
                "granted" if after else "not granted",
                "loosen" if after else "tighten",
                "gained" if after else "lost",
            )
    if old is None or new is None:
        return
    # A condition that appears narrows who gets the feature; one that goes widens it.
    out.presence(
        "features", name, "condition", _same_text(old.condition), _same_text(new.condition), adding="tighten"
    )
    if old.condition is not None and new.condition is not None:
        out.text("features", name, "condition", _same_text(old.condition), _same_text(new.condition))
    out.ordered(
        "features",
        name,
        "rollout",
        _rollout(old),
        _rollout(new),
        up="loosen",
        show=lambda bp: f"{bp / 100:g}%",
        rank=float,
    )
    out.flag("features", name, "enabled", old.enabled, new.enabled, on="loosen")


def _limit_value(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def _values_text(limit: CompiledLimit) -> str:
    return ", ".join(f"{t} {_limit_value(v)}" for t, v in zip(limit.tiers, limit.values, strict=True))


def _diff_limit(
    out: _Changes, name: str, old: CompiledLimit | None, new: CompiledLimit | None, tiers: Sequence[str]
) -> None:
    out.presence(
        "limits",
        name,
        "limit",
        _values_text(old) if old is not None else None,
        _values_text(new) if new is not None else None,
    )
    if old is None or new is None:
        return
    out.text("limits", name, "unit", old.unit, new.unit)
    for tier in tiers:
        # A tier of both ladders has a value in both limits: every tier gets one.
        before = old.values[old.tiers.index(tier)]
        after = new.values[new.tiers.index(tier)]
        out.ordered("limits", name, f"tier {tier}", before, after, up="loosen", show=_limit_value)


# --------------------------------------------------------------------------- progression


_LOWER_BOUNDS = {">=": False, ">": True}
_UPPER_BOUNDS = {"<=": False, "<": True}


def _clause_key(clause: Clause) -> str:
    if clause.attribute is not None and clause.operator in _LOWER_BOUNDS:
        return f"{clause.attribute} (minimum)"
    if clause.attribute is not None and clause.operator in _UPPER_BOUNDS:
        return f"{clause.attribute} (maximum)"
    return " ".join(clause.source.split())


def _clauses(program: Program) -> dict[str, Clause]:
    found: dict[str, Clause] = {}
    for clause in program.clauses:
        key = _clause_key(clause)
        number = 1
        while (numbered := key if number == 1 else f"{key} #{number}") in found:
            number += 1
        found[numbered] = clause
    return found


def _strictness(clause: Clause) -> tuple[object, bool] | None:
    """A comparable (bound, strict) pair, or ``None`` for a clause that is no bound."""
    if clause.operator in _LOWER_BOUNDS:
        return clause.value, _LOWER_BOUNDS[clause.operator]
    if clause.operator in _UPPER_BOUNDS:
        return clause.value, _UPPER_BOUNDS[clause.operator]
    return None


def _bound_effect(before: Clause, after: Clause) -> Effect:
    """Tighten when the bound is harder to meet, loosen when easier, else neutral."""
    old, new = _strictness(before), _strictness(after)
    if old is None or new is None or old == new:
        return "neutral"
    (old_value, old_strict), (new_value, new_strict) = old, new
    try:
        if old_value == new_value:
            harder = new_strict and not old_strict
        else:
            higher = bool(new_value > old_value)  # type: ignore[operator]
            harder = higher if before.operator in _LOWER_BOUNDS else not higher
    except TypeError:  # values of different types (a number against a duration)
        return "neutral"
    return "tighten" if harder else "loosen"


def _diff_progression(
    out: _Changes, old: CompiledProgression | None, new: CompiledProgression | None, tiers: Sequence[str]
) -> None:
    if old is None and new is None:
        return
    out.presence(
        "progression",
        "progression",
        "rules",
        "present" if old is not None else None,
        "present" if new is not None else None,
    )
    if old is None or new is None:
        return
    out.text("progression", "progression", "window_days", str(old.window_days), str(new.window_days))
    # A longer grace period lets a seller keep a tier longer after falling short.
    out.ordered(
        "progression",
        "progression",
        "grace_period_days",
        old.grace.days,
        new.grace.days,
        up="loosen",
    )
    for tier in tiers:
        before = old.rules.get(old.tiers.index(tier))
        after = new.rules.get(new.tiers.index(tier))
        if before is None or after is None:
            out.presence(
                "progression",
                tier,
                "rule",
                _same_text(before.program) if before is not None else None,
                _same_text(after.program) if after is not None else None,
            )
            continue
        old_clauses, new_clauses = _clauses(before.program), _clauses(after.program)
        for key in [*old_clauses, *(k for k in new_clauses if k not in old_clauses)]:
            was, now = old_clauses.get(key), new_clauses.get(key)
            if was is None or now is None:
                # One more requirement makes a tier harder to reach; one fewer, easier.
                out.presence(
                    "progression",
                    tier,
                    f"clause {key}",
                    _norm(was),
                    _norm(now),
                    adding="tighten",
                )
            elif _norm(was) != _norm(now):
                effect = _bound_effect(was, now)
                why = {"tighten": "harder to reach", "loosen": "easier to reach"}.get(effect, "changed")
                out.add("progression", tier, f"clause {key}", _norm(was), _norm(now), effect, why)


def _norm(clause: Clause | None) -> str | None:
    return None if clause is None else " ".join(clause.source.split())


# --------------------------------------------------------------------------- errors


def _errors_spec(policy_set: PolicySet) -> ErrorsSpec | None:
    for document in policy_set.documents:
        if isinstance(document.spec, ErrorsSpec):
            return document.spec
    return None


def _statuses(statuses: frozenset[int]) -> str:
    ordered = sorted(statuses)
    runs: list[str] = []
    start = previous = ordered[0]
    for status in [*ordered[1:], None]:
        if status is not None and status == previous + 1:
            previous = status
            continue
        if start % 100 == 0 and previous == start + 99:
            runs.append(f"{start // 100}xx")
        else:
            runs.append(str(start) if start == previous else f"{start}-{previous}")
        if status is not None:
            start = previous = status
    return ", ".join(runs)


def match_text(rule: CompiledErrorRule) -> str:
    """Render a rule's match as one line (``status 5xx, operation payments.*``); ``any`` if empty."""
    parts = []
    if rule.exceptions is not None:
        parts.append("exception " + ", ".join(sorted(rule.exceptions)))
    if rule.statuses is not None:
        parts.append("status " + _statuses(rule.statuses))
    for label, value in (
        ("reason", rule.reason),
        ("domain", rule.domain),
        ("message", rule.message_source),
        ("operation", rule.operation_glob),
        ("when", _same_text(rule.when)),
    ):
        if value is not None:
            parts.append(f"{label} {value}")
    return "; ".join(parts) or "any error"


def _code_text(model: ErrorModel, code: str) -> str:
    entry = model.codes[code]
    return f"{entry.status} {entry.category}" + (", retryable" if entry.retryable else "")


def _diff_errors(out: _Changes, old_set: PolicySet, new_set: PolicySet) -> None:
    old = _model(old_set, "Errors", ErrorModel)
    new = _model(new_set, "Errors", ErrorModel)
    old_codes = old.codes if old is not None else {}
    new_codes = new.codes if new is not None else {}
    old_spec, new_spec = _errors_spec(old_set), _errors_spec(new_set)
    for code in sorted({*old_codes, *new_codes}):
        out.presence(
            "errors",
            code,
            "code",
            _code_text(old, code) if old is not None and code in old_codes else None,
            _code_text(new, code) if new is not None and code in new_codes else None,
        )
        if code not in old_codes or code not in new_codes:
            continue
        a, b = old_codes[code], new_codes[code]
        out.text("errors", code, "status", str(a.status), str(b.status))
        out.text("errors", code, "category", a.category, b.category)
        # Retryable tells callers they may try again: more for them.
        out.flag("errors", code, "retryable", a.retryable, b.retryable, on="loosen")
        # A never-executed error may be retried even by non-idempotent operations.
        out.flag("errors", code, "never_executed", a.never_executed, b.never_executed, on="loosen")
        out.text("errors", code, "title", a.title, b.title)
        if old_spec is not None and new_spec is not None:
            out.text("errors", code, "message", old_spec.codes[code].message, new_spec.codes[code].message)
        out.text("errors", code, "severity", a.severity, b.severity)
        out.text("errors", code, "escalation", a.escalation, b.escalation)
        out.text("errors", code, "type", a.type, b.type)
        out.text("errors", code, "expose_detail", _yes(a.expose_detail), _yes(b.expose_detail))
    old_rules = {r.name: r for r in old.rules} if old is not None else {}
    new_rules = {r.name: r for r in new.rules} if new is not None else {}
    for name in sorted({*old_rules, *new_rules}):
        was, now = old_rules.get(name), new_rules.get(name)
        out.presence(
            "classification",
            name,
            "rule",
            f"{match_text(was)} -> {was.entry.code}" if was is not None else None,
            f"{match_text(now)} -> {now.entry.code}" if now is not None else None,
        )
        if was is not None and now is not None:
            out.text("classification", name, "match", match_text(was), match_text(now))
            out.text("classification", name, "code", was.entry.code, now.entry.code)
    common_old = [n for n in old_rules if n in new_rules]
    common_new = [n for n in new_rules if n in old_rules]
    if common_old != common_new:
        # Only the stretch that moved: the first rule that matches wins, so order decides.
        start = next(i for i, (a, b) in enumerate(zip(common_old, common_new, strict=True)) if a != b)
        end = len(common_old)
        while common_old[end - 1] == common_new[end - 1]:
            end -= 1
        out.text(
            "classification",
            "rules",
            "order",
            ", ".join(common_old[start:end]),
            ", ".join(common_new[start:end]),
        )


# --------------------------------------------------------------------------- resilience


def _fields_text(policy: object) -> str:
    parts = []
    for field in dataclasses.fields(policy):  # type: ignore[arg-type]
        value = getattr(policy, field.name)
        if isinstance(value, frozenset):
            value = "[" + ", ".join(sorted(value)) + "]"
        elif isinstance(value, BudgetPolicy):
            value = "{" + _fields_text(value) + "}"
        parts.append(f"{field.name}={value}")
    return ", ".join(parts)


def _fallback_text(steps: Iterable[object]) -> str:
    shown = []
    for step in steps:
        kind = getattr(step, "kind", "?")
        if kind == "cached":
            shown.append(f"cached (max staleness {seconds(getattr(step, 'max_staleness', None))})")
        elif kind == "operation":
            shown.append(f"operation {getattr(step, 'operation', '')}")
        elif kind == "static":
            shown.append(f"static {getattr(step, 'value', None)!r}")
        else:
            shown.append(kind)
    return " then ".join(shown) or "none"


def _operation_text(policy: OperationPolicy) -> str:
    parts = [f"timeout {seconds(policy.timeout)}"]
    parts.extend(
        name
        for name, present in (
            ("retry", policy.retry),
            ("circuit_breaker", policy.breaker),
            ("bulkhead", policy.bulkhead),
        )
        if present is not None
    )
    if policy.fallback:
        parts.append("fallback")
    return ", ".join(parts)


def _diff_resilience(out: _Changes, old: ResilienceModel | None, new: ResilienceModel | None) -> None:
    old_ops = {p.pattern: p for p in old.policies} if old is not None else {}
    new_ops = {p.pattern: p for p in new.policies} if new is not None else {}
    for pattern in sorted({*old_ops, *new_ops}):
        was, now = old_ops.get(pattern), new_ops.get(pattern)
        out.presence(
            "resilience",
            pattern,
            "operation",
            _operation_text(was) if was is not None else None,
            _operation_text(now) if now is not None else None,
        )
        if was is None or now is None:
            continue
        # A non-idempotent operation retries only errors that never reached the server.
        out.flag("resilience", pattern, "idempotent", was.idempotent, now.idempotent, on="loosen")
        out.ordered("resilience", pattern, "timeout", was.timeout, now.timeout, up="loosen", show=seconds)
        _diff_retry(out, pattern, was.retry, now.retry)
        _diff_breaker(out, pattern, was.breaker, now.breaker)
        _diff_bulkhead(out, pattern, was.bulkhead, now.bulkhead)
        out.text(
            "resilience", pattern, "fallback", _fallback_text(was.fallback), _fallback_text(now.fallback)
        )


def _diff_retry(out: _Changes, pattern: str, old: RetryPolicy | None, new: RetryPolicy | None) -> None:
    # Retrying at all lets a call survive more failures.
    out.presence(
        "resilience",
        pattern,
        "retry",
        _fields_text(old) if old is not None else None,
        _fields_text(new) if new is not None else None,
        adding="loosen",
    )
    if old is None or new is None:
        return
    add = out.ordered
    add("resilience", pattern, "retry.max_attempts", old.max_attempts, new.max_attempts, up="loosen")
    # Delays say when to retry, not whether: no direction.
    for name in ("initial_delay", "max_delay"):
        out.text(
            "resilience", pattern, f"retry.{name}", seconds(getattr(old, name)), seconds(getattr(new, name))
        )
    out.text("resilience", pattern, "retry.multiplier", _number(old.multiplier), _number(new.multiplier))
    out.text("resilience", pattern, "retry.jitter", old.jitter, new.jitter)
    add(
        "resilience",
        pattern,
        "retry.deadline",
        old.deadline,
        new.deadline,
        up="loosen",
        show=seconds,
    )
    out.members(
        "resilience",
        pattern,
        "retry.categories",
        old.categories,
        new.categories,
        more="loosen",
        default="the retryable codes",
    )
    out.text(
        "resilience",
        pattern,
        "retry.honor_retry_after",
        _yes(old.honor_retry_after),
        _yes(new.honor_retry_after),
    )
    add(
        "resilience",
        pattern,
        "retry.max_retry_after",
        old.max_retry_after,
        new.max_retry_after,
        up="loosen",
        show=seconds,
    )
    _diff_budget(out, pattern, old.budget, new.budget)


def _diff_budget(out: _Changes, pattern: str, old: BudgetPolicy | None, new: BudgetPolicy | None) -> None:
    # A budget caps retries: having one holds callers back.
    out.presence(
        "resilience",
        pattern,
        "retry.budget",
        _fields_text(old) if old is not None else None,
        _fields_text(new) if new is not None else None,
        adding="tighten",
    )
    if old is None or new is None:
        return
    if old.kind != new.kind:
        out.text("resilience", pattern, "retry.budget", _fields_text(old), _fields_text(new))
        return
    names = (
        ("max_tokens", "token_ratio") if old.kind == "token_bucket" else ("percent", "min_retries_per_second")
    )
    for name in names:
        out.ordered(
            "resilience",
            pattern,
            f"retry.budget.{name}",
            getattr(old, name),
            getattr(new, name),
            up="loosen",
            show=_number,
        )
    if old.kind == "percent":
        out.text("resilience", pattern, "retry.budget.window", seconds(old.window), seconds(new.window))


def _diff_breaker(out: _Changes, pattern: str, old: BreakerPolicy | None, new: BreakerPolicy | None) -> None:
    # A breaker rejects calls while open: having one holds callers back.
    out.presence(
        "resilience",
        pattern,
        "circuit_breaker",
        _fields_text(old) if old is not None else None,
        _fields_text(new) if new is not None else None,
        adding="tighten",
    )
    if old is None or new is None:
        return
    b = "circuit_breaker."
    out.text(
        "resilience",
        pattern,
        b + "window",
        f"{old.window_type} {old.window_size}",
        f"{new.window_type} {new.window_size}",
    )
    # Higher thresholds and more minimum calls make it trip later: loosen.
    out.ordered(
        "resilience",
        pattern,
        b + "failure_rate_threshold",
        old.failure_rate_threshold,
        new.failure_rate_threshold,
        up="loosen",
        show=_percent,
    )
    out.ordered(
        "resilience",
        pattern,
        b + "slow_call_duration",
        old.slow_call_duration,
        new.slow_call_duration,
        up="loosen",
        show=seconds,
    )
    out.ordered(
        "resilience",
        pattern,
        b + "slow_call_rate_threshold",
        old.slow_call_rate_threshold,
        new.slow_call_rate_threshold,
        up="loosen",
        show=_percent,
    )
    out.ordered("resilience", pattern, b + "minimum_calls", old.minimum_calls, new.minimum_calls, up="loosen")
    # Longer waits keep it open (rejecting) longer: tighten.
    for name in ("wait_in_open", "max_wait_in_open"):
        out.ordered(
            "resilience",
            pattern,
            b + name,
            getattr(old, name),
            getattr(new, name),
            up="tighten",
            show=seconds,
        )
    out.ordered(
        "resilience",
        pattern,
        b + "wait_multiplier",
        old.wait_multiplier,
        new.wait_multiplier,
        up="tighten",
        show=_number,
    )
    out.ordered(
        "resilience",
        pattern,
        b + "permitted_calls_in_half_open",
        old.permitted_calls_in_half_open,
        new.permitted_calls_in_half_open,
        up="loosen",
    )
    out.text(
        "resilience",
        pattern,
        b + "max_wait_in_half_open",
        seconds(old.max_wait_in_half_open, none="until every probe completed"),
        seconds(new.max_wait_in_half_open, none="until every probe completed"),
    )
    default = ", ".join(sorted(DEFAULT_RECORD_CATEGORIES))
    # More errors counted as failures trips it sooner; more ignored, later.
    out.members(
        "resilience",
        pattern,
        b + "record.categories",
        old.record_categories,
        new.record_categories,
        more="tighten",
        default=default,
    )
    out.members("resilience", pattern, b + "record.codes", old.record_codes, new.record_codes, more="tighten")
    out.members("resilience", pattern, b + "ignore.codes", old.ignore_codes, new.ignore_codes, more="loosen")


def _diff_bulkhead(
    out: _Changes, pattern: str, old: BulkheadPolicy | None, new: BulkheadPolicy | None
) -> None:
    # A bulkhead turns calls away when full: having one holds callers back.
    out.presence(
        "resilience",
        pattern,
        "bulkhead",
        _fields_text(old) if old is not None else None,
        _fields_text(new) if new is not None else None,
        adding="tighten",
    )
    if old is None or new is None:
        return
    out.ordered(
        "resilience", pattern, "bulkhead.max_concurrent", old.max_concurrent, new.max_concurrent, up="loosen"
    )
    out.ordered(
        "resilience", pattern, "bulkhead.max_wait", old.max_wait, new.max_wait, up="loosen", show=seconds
    )


# --------------------------------------------------------------------------- rate limits


_STORE_ERROR_RANK = {"fail_closed": 0, "local": 1, "fail_open": 2}
"""How much a mode lets through when the store is down: failing open lets everything."""


def _limit_text(policy: RateLimitPolicy) -> str:
    targets = [*policy.routes, *policy.operations]
    return "matches " + ", ".join(targets)


def _windows(policy: RateLimitPolicy, tier: str | None) -> dict[str, GcraWindow]:
    found: dict[str, GcraWindow] = {}
    for window in policy.windows_for(tier):
        name, number = window.name, 1
        while name in found:
            number += 1
            name = f"{window.name} #{number}"
        found[name] = window
    return found


def _diff_ratelimits(
    out: _Changes, old: RateLimitsModel | None, new: RateLimitsModel | None, tiers: Sequence[str]
) -> None:
    old_limits = {p.name: p for p in old.limits} if old is not None else {}
    new_limits = {p.name: p for p in new.limits} if new is not None else {}
    for name in sorted({*old_limits, *new_limits}):
        was, now = old_limits.get(name), new_limits.get(name)
        # A new limit can only deny requests that were allowed before.
        out.presence(
            "ratelimits",
            name,
            "limit",
            _limit_text(was) if was is not None else None,
            _limit_text(now) if now is not None else None,
            adding="tighten",
        )
        if was is None or now is None:
            continue
        out.text("ratelimits", name, "routes", ", ".join(was.routes), ", ".join(now.routes))
        out.text("ratelimits", name, "operations", ", ".join(was.operations), ", ".join(now.operations))
        out.text("ratelimits", name, "key", was.key.source, now.key.source)
        out.text(
            "ratelimits",
            name,
            "partition",
            was.partition.source if was.partition else None,
            now.partition.source if now.partition else None,
        )
        # A `when` that appears limits fewer requests; one that goes, all of them.
        out.presence("ratelimits", name, "when", _same_text(was.when), _same_text(now.when), adding="loosen")
        if was.when is not None and now.when is not None:
            out.text("ratelimits", name, "when", _same_text(was.when), _same_text(now.when))
        out.text("ratelimits", name, "algorithm", was.algorithm, now.algorithm)
        out.ordered("ratelimits", name, "cost", was.cost, now.cost, up="tighten")
        out.flag("ratelimits", name, "shadow", was.shadow, now.shadow, on="loosen")
        out.ordered(
            "ratelimits",
            name,
            "on_store_error",
            was.on_store_error,
            now.on_store_error,
            up="loosen",
            rank=lambda mode: float(_STORE_ERROR_RANK[mode]),
        )
        both_fixed = not was.tier_windows and not now.tier_windows
        for tier in [None] if both_fixed else tiers:
            _diff_windows(out, name, tier, _windows(was, tier), _windows(now, tier))
        # Which tier limit a window enforces changes only what `check` compares it with.
        for window in sorted({*was.enforces, *now.enforces}):
            out.text(
                "ratelimits",
                name,
                f"window {window} enforces",
                was.enforces.get(window),
                now.enforces.get(window),
            )


def _diff_windows(
    out: _Changes, name: str, tier: str | None, old: Mapping[str, GcraWindow], new: Mapping[str, GcraWindow]
) -> None:
    suffix = "" if tier is None else f" tier {tier}"
    for window in [*old, *(w for w in new if w not in old)]:
        was, now = old.get(window), new.get(window)
        aspect = f"window {window}{suffix}"
        # A window more is one more way to be denied.
        out.presence(
            "ratelimits",
            name,
            aspect,
            f"{rate(was)} burst {was.burst}" if was is not None else None,
            f"{rate(now)} burst {now.burst}" if now is not None else None,
            adding="tighten",
        )
        if was is None or now is None:
            continue
        if (was.quota, was.period) != (now.quota, now.period):
            out.ordered(
                "ratelimits",
                name,
                f"{aspect} rate",
                was,
                now,
                up="loosen",
                show=rate,
                rank=lambda w: Fraction(w.quota, w.period),
            )
        out.ordered("ratelimits", name, f"{aspect} burst", was.burst, now.burst, up="loosen")


# --------------------------------------------------------------------------- output


SECTION_TITLES: Mapping[Section, str] = {
    "tiers": "Tiers",
    "features": "Features",
    "limits": "Limits",
    "progression": "Progression",
    "errors": "Error codes",
    "classification": "Classification rules",
    "resilience": "Resilience",
    "ratelimits": "Rate limits",
}

_SENTENCES: Mapping[Summary, str] = {
    "loosen": "The change only loosens.",
    "tighten": "The change only tightens.",
    "both": "The change loosens and tightens.",
    "neither": "The change neither loosens nor tightens.",
}

_HEADLINES: Mapping[Summary, str] = {
    "loosen": "only loosens",
    "tighten": "only tightens",
    "both": "loosens and tightens",
    "neither": "neither loosens nor tightens",
}

_ABSENT = "(absent)"


def _counts(diff: PolicyDiff) -> str:
    total = len(diff.changes)
    return (
        f"{total} change{'s' * (total != 1)}: {diff.count('loosen')} loosen,"
        f" {diff.count('tighten')} tighten, {diff.count('neutral')} neutral"
    )


def render_text(diff: PolicyDiff) -> str:
    """Render a diff for a terminal: one line per change, grouped by section, then a summary."""
    lines = [f"diff {diff.old} (version {diff.old_version}) -> {diff.new} (version {diff.new_version})"]
    if not diff.changes:
        lines.append("No semantic changes.")
        return "\n".join(lines) + "\n"
    for section in SECTIONS:
        changes = [c for c in diff.changes if c.section == section]
        if not changes:
            continue
        lines.append("")
        lines.append(SECTION_TITLES[section])
        lines.extend(
            f"  {c.subject}  {c.aspect}: {c.before or _ABSENT} -> {c.after or _ABSENT}  [{c.effect}: {c.why}]"
            for c in changes
        )
    lines.append("")
    lines.append(f"{_counts(diff)}. {_SENTENCES[diff.summary]}")
    return "\n".join(lines) + "\n"


def inline_code(text: str, *, in_table: bool = False) -> str:
    """Markdown inline code holding ``text`` on one line; in a table, pipes are escaped."""
    flat = " ".join(text.split())
    if in_table:
        flat = flat.replace("|", "\\|")
    longest = run = 0
    for char in flat:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def _cell(text: str | None) -> str:
    return "—" if text is None else inline_code(text, in_table=True)


def render_markdown(diff: PolicyDiff) -> str:
    """Render a diff as GitHub-flavoured Markdown for a pull-request comment.

    A summary line, then one table per section that has changes.
    """
    versions = f"`{diff.old_version}` → `{diff.new_version}`"
    if not diff.changes:
        return f"**Policy diff: no semantic changes** ({versions})\n"
    lines = [f"**Policy diff: {_HEADLINES[diff.summary]}** ({_counts(diff)}; {versions})"]
    for section in SECTIONS:
        changes = [c for c in diff.changes if c.section == section]
        if not changes:
            continue
        lines.extend(
            [
                "",
                f"#### {SECTION_TITLES[section]}",
                "",
                "| subject | aspect | before | after | effect |",
                "| --- | --- | --- | --- | --- |",
            ]
        )
        lines.extend(
            f"| {_cell(c.subject)} | {_cell(c.aspect)} | {_cell(c.before)} | {_cell(c.after)} |"
            f" {'**' + c.effect + '**' if c.effect != 'neutral' else c.effect} ({c.why}) |"
            for c in changes
        )
    return "\n".join(lines) + "\n"
