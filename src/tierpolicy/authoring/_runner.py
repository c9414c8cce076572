"""Running test suites against a policy set, and measuring exact rule coverage.

Every expectation of a case is evaluated by the engine (with a trace) and compared; the
comparisons, the decisions' traces and what each decision exercised are recorded. No
clock is read when the suite gives ``now``, rate limits count on an in-memory store whose
clock the runner moves, and nothing random is drawn: the same suites against the same
policy set give the same results.

Coverage is a :class:`fractions.Fraction`, compared with a threshold exactly (99.9 % is
not 100 %). What counts as *exercised* is defined per kind of rule in ``docs/testing.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
from fractions import Fraction
from typing import TYPE_CHECKING

from tierpolicy.engine._classification import ErrorModel
from tierpolicy.engine._decisions import Reason, TraceStep
from tierpolicy.engine._engine import Engine
from tierpolicy.engine._exceptions import ConditionError, TierpolicyError
from tierpolicy.engine._ratelimit_store import InMemoryRateLimitStore
from tierpolicy.engine._ratelimiter import RateLimiter
from tierpolicy.engine._ratelimits import RateLimitsModel
from tierpolicy.engine._tiers import activation

from ._suites import FeatureExpect

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from tierpolicy.engine._policyset import PolicySet

    from ._suites import Case, Suite

_CLOCK_START = 1_000.0
"""The rate-limit store's clock at a test's first hit (any value works; offsets matter)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Comparison:
    """One expectation compared with what the engine decided.

    Attributes:
        subject: What was asked, e.g. ``feature listing.promoted``.
        passed: Whether the actual value matches.
        expected: The expected values, by key.
        actual: The actual values, by the same keys.
        trace: The decision's trace, one line per step.
    """

    subject: str
    passed: bool
    expected: Mapping[str, object]
    actual: Mapping[str, object]
    trace: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The JSON form of ``tierpolicy test --format json``."""
        return {
            "subject": self.subject,
            "passed": self.passed,
            "expected": dict(self.expected),
            "actual": dict(self.actual),
            "trace": list(self.trace),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one case.

    Attributes:
        case: The case run.
        comparisons: Every expectation compared, in the order written.
        error: Why the case could not be evaluated (an invalid context ...), if it could not.
    """

    case: Case
    comparisons: tuple[Comparison, ...]
    error: str | None = None

    @property
    def passed(self) -> bool:
        """Whether every expectation held and nothing failed to evaluate."""
        return self.error is None and all(c.passed for c in self.comparisons)

    @property
    def failures(self) -> tuple[Comparison, ...]:
        """The comparisons that did not hold."""
        return tuple(c for c in self.comparisons if not c.passed)

    def to_json(self) -> dict[str, object]:
        """The JSON form of ``tierpolicy test --format json``."""
        return {
            "suite": self.case.suite,
            "test": self.case.test,
            "case": self.case.label or None,
            "name": self.case.name,
            "source": self.case.source,
            "passed": self.passed,
            "error": self.error,
            "comparisons": [c.to_json() for c in self.comparisons],
        }


@dataclasses.dataclass(frozen=True, slots=True)
class CoverageItem:
    """One rule that tests can exercise.

    Attributes:
        id: Stable id, e.g. ``feature:listing.video`` or ``limit:team_members@gold``.
        kind: ``feature``, ``limit``, ``progression``, ``clause``, ``classification`` or
            ``rate_limit``.
        label: What a person reads, e.g. ``limit team_members for gold``.
        source: Where the rule is (``FILE:LINE:COL``).
    """

    id: str
    kind: str
    label: str
    source: str


KINDS = ("feature", "limit", "progression", "clause", "classification", "rate_limit")


@dataclasses.dataclass(frozen=True, slots=True)
class Coverage:
    """Which rules the tests exercised.

    Attributes:
        items: Every rule, in policy order within each kind.
        covered: The ids of the rules exercised.
    """

    items: tuple[CoverageItem, ...]
    covered: frozenset[str]

    @property
    def ratio(self) -> Fraction:
        """Exercised rules over all rules, exactly; 1 when there are no rules."""
        if not self.items:
            return Fraction(1)
        return Fraction(sum(item.id in self.covered for item in self.items), len(self.items))

    @property
    def uncovered(self) -> tuple[CoverageItem, ...]:
        """The rules no test exercised."""
        return tuple(item for item in self.items if item.id not in self.covered)

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """Kind -> (exercised, total), for kinds the policy set has."""
        counts: dict[str, tuple[int, int]] = {}
        for item in self.items:
            done, total = counts.get(item.kind, (0, 0))
            counts[item.kind] = (done + (item.id in self.covered), total + 1)
        return counts

    def meets(self, threshold: Fraction) -> bool:
        """Whether coverage, in percent, is at least ``threshold``, compared exactly."""
        return self.ratio * 100 >= threshold

    def to_json(self) -> dict[str, object]:
        """The JSON form of ``tierpolicy test --coverage --format json``."""
        ratio = self.ratio
        return {
            "covered": sum(item.id in self.covered for item in self.items),
            "total": len(self.items),
            "ratio": f"{ratio.numerator}/{ratio.denominator}",
            "percent": percent_text(ratio),
            "by_kind": {k: {"covered": c, "total": t} for k, (c, t) in self.by_kind().items()},
            "uncovered": [dataclasses.asdict(item) for item in self.uncovered],
        }


def percent_text(ratio: Fraction) -> str:
    """A percentage with two decimals, truncated (never rounded up): 1999/2000 is 99.95."""
    hundredths = ratio * 10_000
    whole = hundredths.numerator // hundredths.denominator
    return f"{whole // 100}.{whole % 100:02d}"


@dataclasses.dataclass(frozen=True, slots=True)
class RunResult:
    """Every case's result and the coverage they reached.

    Attributes:
        results: One per case, in suite and file order.
        coverage: The rules exercised.
    """

    results: tuple[CaseResult, ...]
    coverage: Coverage

    @property
    def passed(self) -> bool:
        """Whether every case passed."""
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        """How many cases failed."""
        return sum(not r.passed for r in self.results)


def coverage_items(policy_set: PolicySet) -> tuple[CoverageItem, ...]:
    """Every rule of ``policy_set`` that tests can exercise, in a stable order."""
    items: list[CoverageItem] = []
    tiers = policy_set.tiers
    if tiers is not None:
        items.extend(
            CoverageItem(f.rule, "feature", f"feature {name}", f.source) for name, f in tiers.features.items()
        )
        items.extend(
            CoverageItem(f"{limit.rule}@{tier}", "limit", f"limit {name} for {tier}", limit.source)
            for name, limit in tiers.limits.items()
            for tier in limit.tiers
        )
        if tiers.progression is not None:
            for index in sorted(tiers.progression.rules):
                rule = tiers.progression.rules[index]
                tier = tiers.tiers[index]
                items.append(
                    CoverageItem(rule.rule, "progression", f"progression rule of {tier}", rule.source)
                )
                items.extend(
                    CoverageItem(
                        f"{rule.rule}#{k + 1}", "clause", f"{tier} clause {clause.source}", rule.source
                    )
                    for k, clause in enumerate(rule.program.clauses)
                )
    errors = policy_set.models.get("Errors")
    if isinstance(errors, ErrorModel):
        items.extend(
            CoverageItem(r.rule, "classification", f"classification rule {r.name}", r.source)
            for r in errors.rules
        )
    limits = policy_set.models.get("RateLimits")
    if isinstance(limits, RateLimitsModel):
        items.extend(
            CoverageItem(p.rule, "rate_limit", f"rate limit {p.name}", p.source) for p in limits.limits
        )
    return tuple(items)


def select(suites: Iterable[Suite], pattern: str | None) -> list[Case]:
    """The cases whose suite or test name matches the glob ``pattern`` (all when ``None``).

    A case matches when the glob matches its suite's name, its test's name, or
    ``suite/test``; matching ignores case.
    """
    cases = [case for suite in suites for case in suite.cases]
    if pattern is None:
        return cases
    glob = pattern.lower()
    return [
        c
        for c in cases
        if any(fnmatch.fnmatchcase(name.lower(), glob) for name in (c.suite, c.test, f"{c.suite}/{c.test}"))
    ]


def run(policy_set: PolicySet, cases: Sequence[Case]) -> RunResult:
    """Run ``cases`` against ``policy_set``; never raises for what a case asks."""
    covered: set[str] = set()
    clause_outcomes: dict[str, set[bool]] = {}
    results = [_Run(policy_set, case, covered, clause_outcomes).result() for case in cases]
    covered.update(clause for clause, seen in clause_outcomes.items() if seen == {True, False})
    return RunResult(tuple(results), Coverage(coverage_items(policy_set), frozenset(covered)))


def _trace(steps: Iterable[TraceStep]) -> tuple[str, ...]:
    return tuple(
        f"{step.step} {step.outcome}: {step.detail}" + (f" ({step.rule})" if step.rule else "")
        for step in steps
    )


def _subset(expected: Mapping[str, object], actual: Mapping[str, object]) -> bool:
    return all(actual.get(key) == value for key, value in expected.items())


class _Run:
    """Runs one case."""

    def __init__(
        self, policy_set: PolicySet, case: Case, covered: set[str], clause_outcomes: dict[str, set[bool]]
    ) -> None:
        self.case = case
        self.now = case.now or dt.datetime.now(dt.UTC)
        self.engine = Engine(policy_set, clock=lambda: self.now)
        self.covered = covered
        self.clause_outcomes = clause_outcomes
        self.comparisons: list[Comparison] = []

    def result(self) -> CaseResult:
        try:
            self.features()
            self.limits()
            self.tier()
            self.classification()
            self.retry()
            self.rate_limit()
        except (TierpolicyError, ValueError) as exc:
            return CaseResult(self.case, tuple(self.comparisons), f"{type(exc).__name__}: {exc}")
        return CaseResult(self.case, tuple(self.comparisons))

    @property
    def context(self) -> dict[str, object]:
        assert self.case.context is not None  # noqa: S101  the suite checker requires a seller
        return dict(self.case.context)

    def features(self) -> None:
        for name, want in self.case.expect.features.items():
            decision = self.engine.check(
                name, self.context, now=self.now, overrides=self.case.overrides, trace=True
            )
            if decision.rule == f"feature:{name}":
                self.covered.add(decision.rule)
            expected: dict[str, object] = (
                {"allowed": want == "allow"}
                if not isinstance(want, FeatureExpect)
                else {
                    k: v
                    for k, v in (("allowed", want.allowed), ("reason", want.reason), ("rule", want.rule))
                    if v is not None
                }
            )
            actual = {"allowed": decision.allowed, "reason": decision.reason.value, "rule": decision.rule}
            self.comparisons.append(
                Comparison(
                    f"feature {name}", _subset(expected, actual), expected, actual, _trace(decision.trace)
                )
            )

    def limits(self) -> None:
        for name, want in self.case.expect.limits.items():
            decision = self.engine.limit(
                name, self.context, now=self.now, overrides=self.case.overrides, trace=True
            )
            if decision.rule == f"limit:{name}":
                self.covered.add(f"{decision.rule}@{decision.tier}")
            actual_value: object = "unlimited" if decision.value is None else decision.value
            self.comparisons.append(
                Comparison(
                    f"limit {name}",
                    actual_value == want,
                    {"value": want},
                    {"value": actual_value, "rule": decision.rule},
                    _trace(decision.trace),
                )
            )

    def tier(self) -> None:
        want = self.case.expect.tier
        if want is None:
            return
        decision = self.engine.qualify(self.context, now=self.now, overrides=self.case.overrides, trace=True)
        if decision.reason is Reason.QUALIFIED:
            self.covered.add(decision.rule)
        self._clauses()
        actual: dict[str, object] = {
            "qualified": decision.qualified_tier,
            "effective": decision.effective_tier,
            "action": decision.action.value,
            "next": decision.next_tier or "none",
            "reason": decision.reason.value,
            "missing": [c.clause for c in decision.missing],
        }
        expected: dict[str, object] = {
            k: v
            for k, v in (
                ("qualified", want.qualified),
                ("effective", want.effective),
                ("action", want.action),
                ("next", want.next),
                ("reason", want.reason),
            )
            if v is not None
        }
        passed = _subset(expected, actual)
        if want.missing is not None:
            expected["missing"] = list(want.missing)
            passed = passed and _same_clauses(want.missing, decision.missing)
        self.comparisons.append(Comparison("tier", passed, expected, actual, _trace(decision.trace)))

    def _clauses(self) -> None:
        """Record each progression clause's outcome for this seller (for clause coverage)."""
        progression = self.engine.policy_set.tiers.progression  # type: ignore[union-attr]
        assert progression is not None  # noqa: S101  the suite checker requires progression rules
        context = self.context
        for rule in progression.rules.values():
            for k, clause in enumerate(rule.program.clauses):
                try:
                    holds = clause.program.evaluate(activation(context, clause.program, self.now)) is True
                except ConditionError:
                    continue  # a clause that cannot be evaluated shows neither outcome
                self.clause_outcomes.setdefault(f"{rule.rule}#{k + 1}", set()).add(holds)

    def classification(self) -> None:
        want = self.case.expect.classification
        if want is None or self.case.info is None:
            return
        decision = self.engine.classify(self.case.info, operation=self.case.operation, trace=True)
        self.covered.add(decision.rule)
        expected = {
            k: v
            for k, v in (
                ("code", want.code),
                ("status", want.status),
                ("retryable", want.retryable),
                ("category", want.category),
                ("rule", want.rule),
            )
            if v is not None
        }
        actual = {
            "code": decision.code,
            "status": decision.status,
            "retryable": decision.retryable,
            "category": decision.category,
            "rule": decision.rule.removeprefix("error-rule:"),
        }
        self.comparisons.append(
            Comparison("classification", _subset(expected, actual), expected, actual, _trace(decision.trace))
        )

    def retry(self) -> None:
        wanted = self.case.expect.retry
        if wanted is None or self.case.info is None:
            return
        operation = self.case.operation or ""
        elapsed = 0.0
        previous: float | None = None
        for attempt, want in enumerate(wanted, start=1):
            plan = self.engine.retry_plan(
                operation,
                self.case.info,
                attempt=attempt,
                elapsed=elapsed,
                previous_delay=previous,
                trace=True,
            )
            self.covered.add(plan.classification.rule)
            expected = {
                k: v
                for k, v in (("retry", want.retry), ("delay", want.delay), ("reason", want.reason))
                if v is not None
            }
            if "delay" in expected:
                expected["delay"] = float(want.delay)  # type: ignore[arg-type]
            actual = {"retry": plan.retry, "delay": plan.delay, "reason": plan.reason.value}
            self.comparisons.append(
                Comparison(
                    f"retry after attempt {attempt} of {operation}",
                    _subset(expected, actual),
                    expected,
                    actual,
                    _trace(plan.trace),
                )
            )
            elapsed += plan.delay
            previous = plan.delay

    def rate_limit(self) -> None:
        want = self.case.expect.rate_limit
        if want is None:
            return
        clock = [_CLOCK_START]
        store = InMemoryRateLimitStore(clock=lambda: clock[0])
        limiter = RateLimiter(
            self.engine,
            store,
            clock=lambda: clock[0],
            local_store=InMemoryRateLimitStore(clock=lambda: clock[0]),
        )
        context = self.context
        denied: list[int] = []
        number = 0
        last = None
        lines: list[str] = []
        for offset, count in self.case.hits:
            clock[0] = _CLOCK_START + offset
            for _ in range(count):
                number += 1
                last = limiter.check(context, route=self.case.route, operation=self.case.operation)
                for decision in last.decisions:
                    if decision.limited:
                        self.covered.add(decision.rule)
                if not last.allowed:
                    denied.append(number)
            if last is not None:
                deciding = last.deciding
                where = (
                    f"{deciding.limit}/{deciding.window.name}, {deciding.remaining} left"
                    if deciding
                    else "no limit matched"
                )
                lines.append(
                    f"hits up to {number} at +{offset:g}s: last {'allowed' if last.allowed else 'denied'} ({where})"
                )
        deciding = last.deciding if last is not None else None
        expected: dict[str, object] = {"denied": _ranges(want.denied)}
        actual: dict[str, object] = {
            "denied": _ranges(denied),
            "remaining": deciding.remaining if deciding is not None else None,
            "limit": deciding.limit if deciding is not None else None,
        }
        if want.remaining is not None:
            expected["remaining"] = want.remaining
        if want.limit is not None:
            expected["limit"] = want.limit
        passed = sorted(set(want.denied)) == denied and _subset(
            {k: v for k, v in expected.items() if k != "denied"}, actual
        )
        subject = f"rate limit {self.case.route or self.case.operation}"
        self.comparisons.append(Comparison(subject, passed, expected, actual, tuple(lines)))


def _same_clauses(expected: Sequence[str], missing: Sequence[object]) -> bool:
    """Whether ``expected`` names exactly the missing clauses, each by attribute or text."""
    left = list(missing)
    for name in expected:
        match = next(
            (c for c in left if name in {getattr(c, "attribute", None), getattr(c, "clause", None)}), None
        )
        if match is None:
            return False
        left.remove(match)
    return not left


def _ranges(numbers: Sequence[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``: long denied runs stay readable."""
    ordered = sorted(set(numbers))
    if not ordered:
        return "none"
    parts: list[str] = []
    start = previous = ordered[0]
    for n in [*ordered[1:], None]:
        if n is not None and n == previous + 1:
            previous = n
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if n is not None:
            start = previous = n
    return ", ".join(parts)
