"""Progression rules that cannot work as written: unreachable tiers, non-monotone rules.

Qualification tries the rules from the highest tier down and takes the first that holds,
so a lower tier whose rule implies a higher tier's rule is never reached by metrics, and
a higher tier whose rule does not imply the rule below lets sellers skip a tier.

Deciding this for arbitrary conditions needs a solver; progression rules are meant to be
a top-level ``&&`` of comparisons of one attribute with a constant (docs/policy-format.md
asks for that shape), and for that shape it is exact: each rule is a box, one interval
(or one required value) per attribute, and implication is box containment. A rule with
any other clause (``||``, ``!=``, arithmetic, a function call, a timestamp) is left alone,
so every finding is a real one. Attributes a rule does not mention are unconstrained; for
``int`` attributes bounds are rounded to whole numbers so ``x > 4`` and ``x >= 5`` agree.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import TYPE_CHECKING

from ._diagnostics import Code, Diagnostic, Position
from .cel._types import INT, UINT, ObjectType

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .cel import CelType, Clause, Program

__all__ = ["RuleInput", "progression_findings"]


@dataclasses.dataclass(frozen=True, slots=True)
class RuleInput:
    """One tier's progression rule, with where to report about it.

    Attributes:
        index: The tier's position in ``tiers``, lowest first.
        tier: The tier's name.
        program: The compiled ``when``.
        position: The rule's key in the file.
    """

    index: int
    tier: str
    program: Program
    position: Position


@dataclasses.dataclass(frozen=True, slots=True)
class _Interval:
    """Numbers between ``lo`` and ``hi``; ``None`` is unbounded."""

    lo: float | None = None
    lo_strict: bool = False
    hi: float | None = None
    hi_strict: bool = False

    def meet(self, other: _Interval) -> _Interval:
        lo, lo_strict = _tighter_lo(self, other)
        hi, hi_strict = _tighter_hi(self, other)
        return _Interval(lo, lo_strict, hi, hi_strict)

    @property
    def empty(self) -> bool:
        if self.lo is None or self.hi is None:
            return False
        return self.lo > self.hi or (self.lo == self.hi and (self.lo_strict or self.hi_strict))

    def within(self, other: _Interval) -> bool:
        """Whether every number here is also in ``other`` (this interval is not empty)."""
        lo_ok = other.lo is None or (
            self.lo is not None
            and (self.lo > other.lo or (self.lo == other.lo and (self.lo_strict or not other.lo_strict)))
        )
        hi_ok = other.hi is None or (
            self.hi is not None
            and (self.hi < other.hi or (self.hi == other.hi and (self.hi_strict or not other.hi_strict)))
        )
        return lo_ok and hi_ok

    def whole(self) -> _Interval:
        """The same interval over whole numbers, with inclusive rounded bounds."""
        lo = self.lo
        if lo is not None:
            lo = math.floor(lo) + 1 if self.lo_strict and lo == math.floor(lo) else math.ceil(lo)
        hi = self.hi
        if hi is not None:
            hi = math.ceil(hi) - 1 if self.hi_strict and hi == math.ceil(hi) else math.floor(hi)
        return _Interval(lo=lo, hi=hi)


def _tighter_lo(a: _Interval, b: _Interval) -> tuple[float | None, bool]:
    if a.lo is None:
        return b.lo, b.lo_strict
    if b.lo is None or a.lo > b.lo:
        return a.lo, a.lo_strict
    if b.lo > a.lo:
        return b.lo, b.lo_strict
    return a.lo, a.lo_strict or b.lo_strict


def _tighter_hi(a: _Interval, b: _Interval) -> tuple[float | None, bool]:
    if a.hi is None:
        return b.hi, b.hi_strict
    if b.hi is None or a.hi < b.hi:
        return a.hi, a.hi_strict
    if b.hi < a.hi:
        return b.hi, b.hi_strict
    return a.hi, a.hi_strict or b.hi_strict


@dataclasses.dataclass(frozen=True, slots=True)
class _Equal:
    """Exactly this (non-numeric) value, or none at all when ``conflict``."""

    value: object
    conflict: bool = False

    @property
    def empty(self) -> bool:
        return self.conflict

    def within(self, other: _Equal) -> bool:
        return self.value == other.value


_Constraint = _Interval | _Equal
_Box = dict[str, _Constraint]


def _attribute_type(environment: Mapping[str, CelType], dotted: str) -> CelType | None:
    root, *fields = dotted.split(".")
    found: CelType | None = environment.get(root)
    for field in fields:
        if not isinstance(found, ObjectType):
            return None
        found = found.fields.get(field)
    return found


def _constraint(clause: Clause, environment: Mapping[str, CelType]) -> _Constraint | None:
    """The set of values one clause allows for its attribute, if it has the simple shape."""
    op, value = clause.operator, clause.value
    if clause.attribute is None or op is None:
        return None
    if isinstance(value, bool | str):
        return _Equal(value) if op == "==" else None
    if not isinstance(value, int | float) or (isinstance(value, float) and not math.isfinite(value)):
        return None
    number = float(value)
    interval = {
        "==": _Interval(lo=number, hi=number),
        ">=": _Interval(lo=number),
        ">": _Interval(lo=number, lo_strict=True),
        "<=": _Interval(hi=number),
        "<": _Interval(hi=number, hi_strict=True),
    }.get(op)
    if interval is not None and _attribute_type(environment, clause.attribute) in {INT, UINT}:
        interval = interval.whole()
    return interval


def _meet(a: _Constraint, b: _Constraint) -> _Constraint | None:
    if isinstance(a, _Interval) and isinstance(b, _Interval):
        return a.meet(b)
    if isinstance(a, _Equal) and isinstance(b, _Equal):
        return a if a.value == b.value and not b.conflict else _Equal(a.value, conflict=True)
    return None  # a number and a string for one attribute: leave it to the type checker


def _within(a: _Constraint, b: _Constraint) -> bool:
    if isinstance(a, _Interval) and isinstance(b, _Interval):
        return a.within(b)
    if isinstance(a, _Equal) and isinstance(b, _Equal):
        return a.within(b)
    return False


def _box(program: Program, environment: Mapping[str, CelType]) -> _Box | None:
    box: _Box = {}
    for clause in program.clauses:
        constraint = _constraint(clause, environment)
        if constraint is None:
            return None
        assert clause.attribute is not None  # noqa: S101  _constraint returned one
        previous = box.get(clause.attribute)
        if previous is not None:
            constraint = _meet(previous, constraint)
            if constraint is None:
                return None
        box[clause.attribute] = constraint
    return box


def _implies(a: _Box, b: _Box) -> bool:
    """Whether every context meeting non-empty box ``a`` also meets box ``b``."""
    return all(name in a and _within(a[name], constraint) for name, constraint in b.items())


def progression_findings(rules: Sequence[RuleInput], environment: Mapping[str, CelType]) -> list[Diagnostic]:
    """Report unreachable tiers (TP413) and rules that are not monotone (TP409).

    Args:
        rules: The progression rules above the lowest tier, in any order.
        environment: The context schema, to know which attributes are whole numbers.

    Returns:
        Warnings, in tier order.
    """
    ordered = sorted(rules, key=lambda r: r.index)
    boxes = {r.index: _box(r.program, environment) for r in ordered}
    found: list[Diagnostic] = []
    unreachable: set[int] = set()
    for rule in ordered:
        box = boxes[rule.index]
        if box is None:
            continue
        empty = next((name for name, c in box.items() if c.empty), None)
        if empty is not None:
            unreachable.add(rule.index)
            found.append(
                Diagnostic(
                    rule.position,
                    "warning",
                    Code.UNREACHABLE_TIER,
                    f"no seller reaches {rule.tier!r} by metrics: its rule can never hold, "
                    f"no value of {empty} meets all of its clauses",
                    hint=f"fix the thresholds for {empty} in the rule for {rule.tier!r}",
                )
            )
            continue
        higher = next(
            (
                h
                for h in ordered
                if h.index > rule.index
                and (other := boxes[h.index]) is not None
                and not any(c.empty for c in other.values())
                and _implies(box, other)
            ),
            None,
        )
        if higher is not None:
            unreachable.add(rule.index)
            found.append(
                Diagnostic(
                    rule.position,
                    "warning",
                    Code.UNREACHABLE_TIER,
                    f"no seller reaches {rule.tier!r} by metrics: every seller who meets its rule "
                    f"also meets the rule for {higher.tier!r}, which is tried first",
                    hint=f"make the rule for {higher.tier!r} stricter than the rule for {rule.tier!r}",
                )
            )
    for lower, higher in itertools.pairwise(ordered):
        low_box, high_box = boxes[lower.index], boxes[higher.index]
        if low_box is None or high_box is None or {lower.index, higher.index} & unreachable:
            continue
        for clause in lower.program.clauses:
            assert clause.attribute is not None  # noqa: S101  the rule has a box, so every clause does
            constraint = _constraint(clause, environment)
            held = high_box.get(clause.attribute)
            if constraint is not None and (held is None or not _within(held, constraint)):
                found.append(
                    Diagnostic(
                        higher.position,
                        "warning",
                        Code.PROGRESSION_NOT_MONOTONE,
                        f"the rule for {higher.tier!r} does not require {clause.source!r}, which the rule "
                        f"for {lower.tier!r} requires: a seller can qualify for {higher.tier!r} "
                        f"without meeting the rule for {lower.tier!r}",
                        hint=f"keep the rule for {higher.tier!r} at least as strict as the one for "
                        f"{lower.tier!r} on every attribute",
                    )
                )
                break
    return sorted(found, key=lambda d: (d.position, d.code.value))
