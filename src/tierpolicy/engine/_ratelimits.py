"""The RateLimits kind: named limits per route or operation, keyed by a CEL expression.

A ``RateLimits`` document lists limits. Each limit matches routes and/or operations by
glob, computes its counter key from the context with a CEL expression that yields a
string (``seller.id``, ``request.client_ip``), and has one or more windows (burst and
sustained), each with a fixed rate (``60/minute``) or a rate per tier that tiers left
out inherit from the tier below. Every limit keeps its own counter (``rl:<limit>:<key>``),
so overlapping limits never share one. See ``docs/ratelimits.md``.
"""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from ._constant_checks import report_constant
from ._diagnostics import Code, did_you_mean
from ._documents import (
    NAME_PATTERN,
    TIER_PATTERN,
    Description,
    Expression,
    LimitSpec,
    Name,
    SpecModel,
    TiersSpec,
)
from ._exceptions import ConditionError
from ._gcra import GcraWindow
from ._resilience import OPERATION_PATTERN, glob_regex
from .cel import BOOL, STRING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._compiling import CompileContext, ParsedDocument
    from .cel import Program

Path_ = tuple[str | int, ...]

ROUTE_PATTERN = r"^/[A-Za-z0-9_.*{}/-]*$"
"""Routes are URL paths; ``*`` matches any run of characters (slashes included)."""

RateText = Annotated[
    StrictStr, Field(min_length=1, max_length=64, description="A rate such as 60/minute or 5/10s.")
]
Algorithm = Literal["gcra", "sliding_window"]
LimitUnit = Literal["second", "minute", "hour", "day"]
StoreErrorMode = Literal["fail_open", "fail_closed", "local"]

_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_PER_SECONDS: dict[str, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"(?P<quota>\d+)/(?P<count>\d*)(?P<unit>[a-z]+)")
MAX_QUOTA = 1_000_000_000
MAX_PERIOD = 366 * 86400
MAX_PER_SECOND = 1_000_000
"""Clocks count microseconds, so a window refills at most one unit per microsecond."""
MAX_TOLERANCE = 2**48
"""Microseconds (about 8.9 years) a window's burst may span: keeps every TAT an exact double."""


class RateError(ValueError):
    """A rate string that does not parse; ``offset`` is where inside the string."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def parse_rate(text: str) -> tuple[int, int]:
    """Parse ``"60/minute"``, ``"10/s"``, ``"1000/hour"`` or ``"5/10s"`` into (quota, seconds)."""
    match = _RATE.fullmatch(text)
    if match is None:
        slash = text.find("/")
        if slash < 0 or not text[:slash].isdigit():
            raise RateError("a rate starts with a whole number of requests, then '/'", 0)
        raise RateError("after '/' comes a period such as second, minute, hour, day or 10s", slash + 1)
    quota = int(match["quota"])
    count = int(match["count"]) if match["count"] else 1
    unit = _UNITS.get(match["unit"])
    if unit is None:
        raise RateError(f"unknown time unit {match['unit']!r}", match.start("unit"))
    if not 0 < quota <= MAX_QUOTA:
        raise RateError(f"the number of requests must be between 1 and {MAX_QUOTA:,}", 0)
    period = count * unit
    if not 0 < period <= MAX_PERIOD:
        raise RateError("the period must be between 1 second and 366 days", match.start("count"))
    if quota > MAX_PER_SECOND * period:
        raise RateError(f"at most {MAX_PER_SECOND:,} requests per second can be counted", 0)
    return quota, period


# --------------------------------------------------------------------------- spec models


class RateMatchSpec(SpecModel):
    """What a limit applies to: route globs and/or operation globs."""

    routes: list[Annotated[StrictStr, Field(pattern=ROUTE_PATTERN, max_length=256)]] = Field(
        default_factory=list
    )
    operations: list[Annotated[StrictStr, Field(pattern=OPERATION_PATTERN, max_length=128)]] = Field(
        default_factory=list
    )


class EnforcesSpec(SpecModel):
    """The tier limit a window enforces, and the period that limit counts in."""

    limit: Name = Field(description="A limit of the Tiers document, e.g. api_requests_per_minute.")
    per: LimitUnit = Field(description="The period the tier limit's numbers count requests in.")


class RateWindowSpec(SpecModel):
    """One window: a rate (fixed, or per tier), an optional burst and the tier limit it enforces."""

    name: Annotated[StrictStr, Field(pattern=NAME_PATTERN, max_length=128)] | None = None
    rate: RateText | dict[Annotated[StrictStr, Field(pattern=TIER_PATTERN, max_length=64)], RateText]
    burst: Annotated[StrictInt, Field(ge=1, le=MAX_QUOTA)] | None = None
    enforces: EnforcesSpec | None = None


class RateLimitSpec(SpecModel):
    """One named rate limit."""

    name: Annotated[StrictStr, Field(pattern=NAME_PATTERN, max_length=128)]
    description: Description = ""
    match: RateMatchSpec
    when: Expression | None = None
    key: Expression
    partition: Expression | None = None
    windows: list[RateWindowSpec] = Field(min_length=1, max_length=8)
    cost: Annotated[StrictInt, Field(ge=0, le=MAX_QUOTA)] = 1
    algorithm: Algorithm = "gcra"
    shadow: StrictBool = False
    on_store_error: StoreErrorMode = "fail_closed"


class RateLimitsSpec(SpecModel):
    """The RateLimits kind: a list of named limits."""

    limits: list[RateLimitSpec] = Field(min_length=1, max_length=1000)


# --------------------------------------------------------------------------- compiled


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """A compiled limit.

    Attributes:
        name: The limit's name; its counters are ``rl:<name>:<key>``.
        routes: Route globs as written.
        operations: Operation globs as written.
        key: The compiled key expression (yields a string).
        partition: The compiled partition expression (yields a string); ``None`` means
            the key is the partition. Counters of one partition share a Redis Cluster
            hash tag, so the limits of one request that share it are checked in one
            atomic script call.
        windows: The windows of a limit with fixed rates (empty when rates are per tier).
        tier_windows: Tier -> its windows, when any rate is per tier.
        lowest_tier: The tier whose windows apply to an unknown or missing tier.
        cost: Units one request spends by default.
        algorithm: ``gcra`` or ``sliding_window``.
        shadow: Count, never deny.
        on_store_error: What to do when the store is unreachable (used by store adapters).
        rule: ``ratelimit:<name>``.
        source: Where the limit is defined.
        policy_version: The version of the policy set.
        when: The compiled condition a request must meet for the limit to apply
            (``None``: every matching request).
        enforces: Window name -> the tier limit it declares it enforces, as
            ``<limit> per <unit>`` (only windows with ``enforces:``).
    """

    name: str
    routes: tuple[str, ...]
    operations: tuple[str, ...]
    key: Program
    partition: Program | None
    windows: tuple[GcraWindow, ...]
    tier_windows: Mapping[str, tuple[GcraWindow, ...]]
    lowest_tier: str | None
    cost: int
    algorithm: Algorithm
    shadow: bool
    on_store_error: StoreErrorMode
    rule: str
    source: str
    policy_version: str = ""
    when: Program | None = None
    enforces: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def applies(self, context: Mapping[str, object]) -> bool:
        """Whether the limit applies to a request with this context (its ``when``, if any).

        Raises:
            ConditionError: The condition failed, or did not give a bool (the compiled
                program checks its result type).
        """
        return self.when is None or self.when.evaluate(context) is True

    def windows_for(self, tier: str | None) -> tuple[GcraWindow, ...]:
        """The windows for a seller of ``tier``; an unknown tier gets the lowest tier's."""
        if not self.tier_windows:
            return self.windows
        found = self.tier_windows.get(tier) if tier is not None else None
        if found is None:
            assert self.lowest_tier is not None  # noqa: S101  set whenever tier_windows is
            return self.tier_windows[self.lowest_tier]
        return found

    def counter(self, context: Mapping[str, object]) -> tuple[str, str]:
        """This limit's counter key for a context, and its partition.

        The key is ``rl:{<partition>}:<name>:<key value>``: the braces are a Redis
        Cluster hash tag, so every counter of one partition lives in one slot. Braces and
        ``%`` in the partition are percent-encoded so the tag always ends where it should.

        Raises:
            ConditionError: The key or partition expression failed, or did not give a string.
        """
        value = self.key.evaluate(context)
        if not isinstance(value, str):
            msg = f"the key of rate limit {self.name!r} is not a string"
            raise ConditionError(msg)
        if self.partition is None:
            partition = value
        else:
            partition_value = self.partition.evaluate(context)
            if not isinstance(partition_value, str):
                msg = f"the partition of rate limit {self.name!r} is not a string"
                raise ConditionError(msg)
            partition = partition_value
        tag = (
            _escape_tag(partition) if "{" in partition or "}" in partition or "%" in partition else partition
        )
        return f"rl:{{{tag}}}:{self.name}:{value}", partition

    def key_of(self, context: Mapping[str, object]) -> str:
        """The counter key alone (see :meth:`counter`).

        Raises:
            ConditionError: The key or partition expression failed, or did not give a string.
        """
        return self.counter(context)[0]


def _escape_tag(partition: str) -> str:
    return partition.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimitsModel:
    """Every limit of a policy set; :meth:`limits_for` finds those that apply."""

    limits: tuple[RateLimitPolicy, ...]
    _routes: tuple[tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]], ...] = ()

    def limits_for(
        self, *, route: str | None = None, operation: str | None = None
    ) -> tuple[RateLimitPolicy, ...]:
        """Every limit matching the route or the operation, in file order (each has its own counter)."""
        found = []
        for policy, (routes, operations) in zip(self.limits, self._routes, strict=True):
            if (route is not None and any(r.fullmatch(route) for r in routes)) or (
                operation is not None and any(o.fullmatch(operation) for o in operations)
            ):
                found.append(policy)
        return tuple(found)

    def limit(self, name: str) -> RateLimitPolicy | None:
        """The limit called ``name``, if any."""
        return next((p for p in self.limits if p.name == name), None)


# --------------------------------------------------------------------------- compiling


def _tier_order(context: CompileContext) -> list[str] | None:
    for item in context.parsed:
        if item.kind == "Tiers" and isinstance(item.spec, TiersSpec):
            return [t.name for t in item.spec.tiers]
    return None


def _tier_limits(context: CompileContext) -> Mapping[str, LimitSpec] | None:
    for item in context.parsed:
        if item.kind == "Tiers" and isinstance(item.spec, TiersSpec):
            return item.spec.limits
    return None


def compile_ratelimits(context: CompileContext, documents: list[ParsedDocument]) -> RateLimitsModel:
    """Compile every RateLimits document into one :class:`RateLimitsModel`."""
    tiers = _tier_order(context)
    tier_limits = _tier_limits(context)
    policies: list[RateLimitPolicy] = []
    seen: dict[str, str] = {}
    for item in documents:
        spec = item.spec
        assert isinstance(spec, RateLimitsSpec)  # noqa: S101  the RateLimits kind validates to RateLimitsSpec
        for index, limit in enumerate(spec.limits):
            base: Path_ = ("spec", "limits", index)
            where = str(item.doc.position_of((*base, "name")))
            if limit.name in seen:
                context.out.add(
                    item.doc.position_of((*base, "name")),
                    Code.DUPLICATE_NAME,
                    f"rate limit {limit.name!r} is defined twice",
                    hint=f"the other is at {seen[limit.name]}; limit names must be unique",
                )
                continue
            seen[limit.name] = where
            policy = _compile_limit(context, item, base, limit, tiers, tier_limits)
            if policy is not None:
                policies.append(policy)
    return RateLimitsModel(
        limits=tuple(policies),
        _routes=tuple(
            (tuple(glob_regex(r) for r in p.routes), tuple(glob_regex(o) for o in p.operations))
            for p in policies
        ),
    )


def _compile_limit(
    c: CompileContext,
    item: ParsedDocument,
    base: Path_,
    spec: RateLimitSpec,
    tiers: list[str] | None,
    tier_limits: Mapping[str, LimitSpec] | None,
) -> RateLimitPolicy | None:
    ok = True
    if not spec.match.routes and not spec.match.operations:
        c.out.add(
            item.doc.position_of((*base, "match")),
            Code.INVALID_VALUE,
            f"rate limit {spec.name!r} matches nothing",
            hint="list at least one route or operation under 'match'",
        )
        ok = False
    when = c.expression(item, (*base, "when"), spec.when, expected=BOOL) if spec.when is not None else None
    if when is not None and spec.when is not None:
        report_constant(c, item, (*base, "when"), spec.when)
    key = c.expression(item, (*base, "key"), spec.key, expected=STRING)
    partition = (
        c.expression(item, (*base, "partition"), spec.partition, expected=STRING)
        if spec.partition is not None
        else None
    )
    fixed: list[GcraWindow] = []
    per_tier: dict[str, list[GcraWindow]] = {}
    made_by_index: dict[int, list[GcraWindow]] = {}
    # Window index -> tier -> (its window, the tier whose rate it is; None for a fixed rate).
    rates_by_index: dict[int, dict[str, tuple[GcraWindow, str | None]]] = {}
    any_tiered = any(isinstance(w.rate, dict) for w in spec.windows)
    if any_tiered and tiers is None:
        c.out.add(
            item.doc.position_of((*base, "windows")),
            Code.MISSING_DOCUMENT,
            "rates per tier need a Tiers document in the policy set",
            hint="add the Tiers document, or write a fixed rate such as 60/minute",
        )
        return None
    for w_index, window in enumerate(spec.windows):
        path: Path_ = (*base, "windows", w_index)
        name = window.name or (spec.name if len(spec.windows) == 1 else f"{spec.name}-{w_index + 1}")
        if isinstance(window.rate, str):
            parsed = _rate(c, item, (*path, "rate"), window.rate)
            if parsed is None:
                ok = False
                continue
            made = _window(name, parsed, window.burst)
            made_by_index.setdefault(w_index, []).append(made)
            if tiers is not None:
                rates_by_index[w_index] = dict.fromkeys(tiers, (made, None))
            if any_tiered:
                assert tiers is not None  # noqa: S101  checked above
                for tier in tiers:
                    per_tier.setdefault(tier, []).append(made)
            else:
                fixed.append(made)
            continue
        assert tiers is not None  # noqa: S101  checked above
        inherited: GcraWindow | None = None
        origin = tiers[0]
        rate_path = (*path, "rate")
        for tier in window.rate:
            if tier not in tiers:
                hint = did_you_mean(tier, tiers)
                c.out.add(
                    item.doc.key_position_of((*rate_path, tier)),
                    Code.UNKNOWN_TIER,
                    f"unknown tier {tier!r}",
                    hint=f"{hint} tiers: {', '.join(tiers)}" if hint else f"tiers: {', '.join(tiers)}",
                )
                ok = False
        if tiers[0] not in window.rate:
            c.out.add(
                item.doc.position_of(rate_path),
                Code.MISSING_LIMIT_VALUE,
                f"the lowest tier {tiers[0]!r} has no rate, so it would have nothing to inherit",
                hint=f"give {tiers[0]} a rate; higher tiers left out inherit from the tier below",
            )
            ok = False
        for tier in tiers:
            text = window.rate.get(tier)
            if text is not None:
                parsed = _rate(c, item, (*rate_path, tier), text)
                if parsed is None:
                    ok = False
                    continue
                below = inherited
                inherited = _window(name, parsed, window.burst)
                origin = tier
                made_by_index.setdefault(w_index, []).append(inherited)
                if below is not None and inherited.quota * below.period < below.quota * inherited.period:
                    c.out.add(
                        item.doc.position_of((*rate_path, tier)),
                        Code.LIMIT_NOT_MONOTONE,
                        f"rate limit {spec.name!r} allows {tier} a lower rate than the tier below it",
                        hint="higher tiers usually get at least the rates of lower ones",
                        severity="warning",
                    )
            if inherited is not None:
                per_tier.setdefault(tier, []).append(inherited)
                rates_by_index.setdefault(w_index, {})[tier] = (inherited, origin)
    if spec.algorithm == "sliding_window":
        for w_index, window in enumerate(spec.windows):
            if window.burst is not None:
                c.out.add(
                    item.doc.position_of((*base, "windows", w_index, "burst")),
                    Code.INVALID_VALUE,
                    "'burst' applies to the gcra algorithm only",
                    hint="a sliding window allows its whole rate at once; remove 'burst' or use gcra",
                )
                ok = False
    for w_index, window in enumerate(spec.windows):
        if window.burst is not None and any(
            w.tolerance > MAX_TOLERANCE for w in made_by_index.get(w_index, ())
        ):
            c.out.add(
                item.doc.position_of((*base, "windows", w_index, "burst")),
                Code.INVALID_VALUE,
                f"a burst of {window.burst:,} at this rate spans more than {MAX_TOLERANCE // 1_000_000 // 86400:,} days",
                hint="lower the burst, or use a faster rate",
            )
            ok = False
    enforces = _check_enforces(c, item, base, spec, tiers, tier_limits, rates_by_index)
    if (
        enforces is None
        or not ok
        or key is None
        or (spec.partition is not None and partition is None)
        or (spec.when is not None and when is None)
    ):
        return None
    return RateLimitPolicy(
        name=spec.name,
        routes=tuple(spec.match.routes),
        operations=tuple(spec.match.operations),
        key=key,
        partition=partition,
        windows=tuple(fixed),
        tier_windows={t: tuple(ws) for t, ws in per_tier.items()},
        lowest_tier=tiers[0] if per_tier and tiers else None,
        cost=spec.cost,
        algorithm=spec.algorithm,
        shadow=spec.shadow,
        on_store_error=spec.on_store_error,
        rule=f"ratelimit:{spec.name}",
        source=str(item.doc.position_of((*base, "name"))),
        policy_version=c.version,
        when=when,
        enforces=enforces,
    )


def _check_enforces(
    c: CompileContext,
    item: ParsedDocument,
    base: Path_,
    spec: RateLimitSpec,
    tiers: list[str] | None,
    tier_limits: Mapping[str, LimitSpec] | None,
    rates_by_index: Mapping[int, Mapping[str, tuple[GcraWindow, str | None]]],
) -> dict[str, str] | None:
    """Validate each window's ``enforces`` and warn where its rate contradicts the tier limit.

    Returns:
        Window name -> ``<limit> per <unit>``, or ``None`` when an ``enforces`` is invalid.
    """
    declared: dict[str, str] = {}
    ok = True
    for w_index, window in enumerate(spec.windows):
        if window.enforces is None:
            continue
        path: Path_ = (*base, "windows", w_index)
        target = window.enforces.limit
        if tiers is None or tier_limits is None:
            c.out.add(
                item.doc.position_of((*path, "enforces")),
                Code.MISSING_DOCUMENT,
                f"'enforces' names tier limit {target!r}, but the set has no Tiers document",
                hint="add the Tiers document that defines the limit, or remove 'enforces'",
            )
            ok = False
            continue
        if target not in tier_limits:
            known = sorted(tier_limits)
            close = did_you_mean(target, known)
            listed = f"tier limits: {', '.join(known)}" if known else "the Tiers document defines no limits"
            c.out.add(
                item.doc.position_of((*path, "enforces", "limit")),
                Code.UNKNOWN_LIMIT,
                f"'enforces' names unknown tier limit {target!r}",
                hint=f"{close} {listed}" if close else listed,
            )
            ok = False
            continue
        name = window.name or (spec.name if len(spec.windows) == 1 else f"{spec.name}-{w_index + 1}")
        declared[name] = f"{target} per {window.enforces.per}"
        values = _limit_values(tier_limits[target], tiers)
        if values is None:
            continue  # the Tiers document reports the broken limit itself
        per = window.enforces.per
        for tier, (made, origin) in rates_by_index.get(w_index, {}).items():
            allowed = Fraction(made.quota * _PER_SECONDS[per], made.period)
            value = values[tier]
            if value is not None and allowed == value:
                continue
            rate_path: Path_ = (*path, "rate")
            explicit = origin == tier
            where = item.doc.position_of((*rate_path, tier) if explicit else rate_path)
            inherited = f" (inherited from {origin})" if origin is not None and not explicit else ""
            gives = "unlimited" if value is None else str(value)
            if value is None:
                hint = f"no rate enforces an unlimited limit; give {tier} a number in {target!r}, or remove 'enforces'"
            elif value == 0:
                hint = f"a rate allows at least 1 request; give {tier} more than 0 in {target!r}, or remove 'enforces'"
            else:
                hint = f"a rate of {value}/{per} for {tier} enforces it; change the rate or the tier limit, or remove 'enforces'"
            c.out.add(
                where,
                Code.RATE_CONTRADICTS_LIMIT,
                f"rate limit {spec.name!r} window {name!r} allows {tier} {_amount(allowed)} per {per}{inherited},"
                f" but tier limit {target} gives {tier} {gives}",
                hint=hint,
                severity="warning",
            )
    return declared if ok else None


def _limit_values(limit: LimitSpec, tiers: list[str]) -> dict[str, int | None] | None:
    """Each tier's value of a tier limit after inheritance (``None``: unlimited), if well formed."""
    if tiers[0] not in limit.values or any(t not in tiers for t in limit.values):
        return None
    values: dict[str, int | None] = {}
    current: int | None = None
    for tier in tiers:
        if tier in limit.values:
            raw = limit.values[tier]
            current = None if raw == "unlimited" else int(raw)
        values[tier] = current
    return values


def _amount(number: Fraction) -> str:
    if number.denominator == 1:
        return str(number.numerator)
    return "about " + f"{float(number):.2f}".rstrip("0").rstrip(".")


def _rate(c: CompileContext, item: ParsedDocument, path: Path_, text: str) -> tuple[int, int] | None:
    try:
        return parse_rate(text)
    except RateError as exc:
        from ._compiling import expression_position  # noqa: PLC0415  shared positioning helper

        position = expression_position(item.doc.position_of(path), item.lines, exc.offset)
        c.out.add(
            position,
            Code.INVALID_VALUE,
            f"{text!r} is not a rate: {exc.message}",
            hint="write requests/period, e.g. 60/minute, 10/s, 1000/hour or 5/10s",
        )
        return None


def _window(name: str, rate: tuple[int, int], burst: int | None) -> GcraWindow:
    quota, period = rate
    return GcraWindow(name=name, quota=quota, period=period, burst=burst if burst is not None else quota)
