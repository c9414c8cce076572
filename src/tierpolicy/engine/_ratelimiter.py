"""Checking a request against every rate limit that matches it, through a store.

:class:`RateLimiter` finds the limits of a route or operation, computes each limit's
counter key and partition from the context, and asks the store. Limits that share a
partition (by default: the same key value) are checked in one atomic store call, all or
nothing. Partitions are checked one after another in file order; when a later partition
denies, what the earlier ones spent is refunded, so a denied request spends nothing
(best effort: if the refund itself fails, those units stay spent until they refill).

When the store fails, each limit applies its ``on_store_error`` mode: ``fail_open``
allows, ``fail_closed`` denies, ``local`` counts in an in-memory store of this process
whose quotas and bursts are divided by ``replicas``, so that N replicas falling back
together admit about what the shared limit would, not N times as much. After a store
is found unavailable, it is not asked again for ``retry_interval`` seconds: requests
meanwhile go straight to the failure modes instead of each waiting for a timeout.

The checking logic is a generator (:meth:`RateLimiter._checking`) that yields store
requests and receives answers, so the sync and async entry points share all of it and
differ only in how they call the store.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, NamedTuple

from ._engine import Engine, PolicyHolder
from ._exceptions import InvalidRequestError, StoreError, StoreUnavailableError
from ._gcra import GcraWindow, RateLimitDecision
from ._ratelimit_store import Hit, InMemoryRateLimitStore, RateLimitStore, Step, at_rest, decide
from ._ratelimits import MAX_QUOTA, RateLimitPolicy, RateLimitsModel

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Sequence

    from ._policyset import PolicySet

logger = logging.getLogger("tierpolicy.ratelimit")

_EMPTY = RateLimitsModel(limits=())
_ROUTE_CACHE_SIZE = 4096

Request = tuple[Literal["hit", "refund"], "Sequence[Hit]"]


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimitResult:
    """What every matching limit says about one request.

    Attributes:
        allowed: Whether the request may go ahead (no limit outside shadow mode denied).
        decisions: One decision per limit checked: partitions in the order of their
            first limit in the file, each partition's limits in file order. Limits of
            partitions after a denying one are not checked and have no decision.
    """

    allowed: bool
    decisions: tuple[RateLimitDecision, ...]

    @property
    def deciding(self) -> RateLimitDecision | None:
        """The decision the headers report.

        When denied: the denying limit with the longest wait. When allowed: the limit
        (not in shadow mode) with the fewest units left. ``None`` when no limit matched.
        """
        enforced = [d for d in self.decisions if not d.shadow] or list(self.decisions)
        if not enforced:
            return None
        denied = [d for d in enforced if not d.allowed]
        if denied:
            return max(denied, key=lambda d: d.retry_after)
        return min(enforced, key=lambda d: d.remaining)

    @property
    def retry_after(self) -> float:
        """Seconds until the request would be allowed (0 when allowed)."""
        deciding = self.deciding
        return 0.0 if self.allowed or deciding is None else deciding.retry_after

    def headers(self) -> dict[str, str]:
        """The draft-10 RateLimit header fields for this request.

        ``RateLimit-Policy`` lists every window of every enforced limit checked,
        ``RateLimit`` reports the deciding window, and ``Retry-After`` is added when the
        request is denied. No enforced limit (none matched, or only shadow limits did):
        no headers, so a limit in shadow mode stays invisible to clients.
        """
        deciding = self.deciding
        if deciding is None or deciding.shadow:
            return {}
        headers = deciding.headers()
        windows: dict[str, GcraWindow] = {}
        for d in self.decisions:
            if not d.shadow:
                for w in d.windows:
                    windows.setdefault(w.name, w)
        if windows:
            headers["RateLimit-Policy"] = ", ".join(
                f'"{w.name}";q={w.quota};w={w.period}' for w in windows.values()
            )
        return headers


class _Planned(NamedTuple):
    policy: RateLimitPolicy
    hit: Hit


class RateLimiter:
    """Checks requests against the rate limits of a policy set.

    Args:
        policies: Where the limits come from: a policy set, an engine, or a
            :class:`~tierpolicy.PolicyHolder` (followed across reloads).
        store: Where counters live (default: a new in-memory store).
        replicas: How many replicas share the store; a ``local`` fallback divides each
            quota and burst by it.
        retry_interval: Seconds to leave an unavailable store alone before asking again.
        clock: Seconds from a monotonic clock, for ``retry_interval`` (injectable).
        local_store: The store ``local`` fallbacks count in (default: a new in-memory one).
    """

    def __init__(
        self,
        policies: PolicySet | Engine | PolicyHolder,
        store: RateLimitStore | None = None,
        *,
        replicas: int = 1,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        local_store: InMemoryRateLimitStore | None = None,
    ) -> None:
        if replicas < 1:
            msg = "replicas must be at least 1"
            raise ValueError(msg)
        if not retry_interval >= 0:
            msg = "retry_interval must be a number of seconds >= 0"
            raise ValueError(msg)
        self._policies = policies
        self.store: RateLimitStore = store if store is not None else InMemoryRateLimitStore()
        self.replicas = replicas
        self.retry_interval = retry_interval
        self._clock = clock
        self.local_store = local_store if local_store is not None else InMemoryRateLimitStore(clock=clock)
        self._down_until: float | None = None
        self._scaled: dict[tuple[GcraWindow, ...], tuple[GcraWindow, ...]] = {}
        # (the model the memo is for, the memo), swapped as one value so that a thread
        # still matching against an old model never writes into the new model's memo.
        self._memo: tuple[
            RateLimitsModel | None, dict[tuple[str | None, str | None], tuple[RateLimitPolicy, ...]]
        ] = (
            None,
            {},
        )

    @property
    def model(self) -> RateLimitsModel:
        """The rate limits in force now (those of the holder's current engine, for a holder)."""
        source = self._policies
        if isinstance(source, PolicyHolder):
            source = source.engine
        if isinstance(source, Engine):
            source = source.policy_set
        found = source.model("RateLimits")
        return found if isinstance(found, RateLimitsModel) else _EMPTY

    @property
    def store_available(self) -> bool:
        """False while the store is being left alone after it was found unavailable."""
        return self._down_until is None or self._clock() >= self._down_until

    def limits_for(
        self, *, route: str | None = None, operation: str | None = None
    ) -> tuple[RateLimitPolicy, ...]:
        """The limits matching a route or operation (memoised per policy set)."""
        model = self.model
        memo_model, memo = self._memo
        if memo_model is not model:
            memo = {}
            self._memo = (model, memo)
        found = memo.get((route, operation))
        if found is None:
            found = model.limits_for(route=route, operation=operation)
            if len(memo) >= _ROUTE_CACHE_SIZE:
                memo.clear()  # raw paths could be unbounded; templates fit easily
            memo[route, operation] = found
        return found

    # ------------------------------------------------------------------ entry points

    def check(
        self,
        context: Mapping[str, object],
        *,
        route: str | None = None,
        operation: str | None = None,
        tier: str | None = None,
        cost: int | None = None,
    ) -> RateLimitResult:
        """Check one request against every limit matching ``route`` or ``operation``.

        Args:
            context: The evaluation context the limits' keys are computed from.
            route: The route (URL path or route template) of the request.
            operation: The operation name, for limits matching operations.
            tier: The seller's tier for per-tier rates (default: ``context["seller"]["tier"]``).
            cost: Units to spend instead of each limit's own cost.

        Raises:
            ConditionError: A limit's ``when`` or key could not be computed from the context.
            InvalidRequestError: ``cost`` is not a whole number from 0 to 1,000,000,000.
        """
        checking = self._checking(context, route, operation, tier, cost)
        try:
            request = next(checking)
            while True:
                kind, hits = request
                try:
                    answer: Step | None = None
                    if kind == "hit":
                        answer = self.store.hit_many(hits)
                    else:
                        self.store.refund_many(hits)
                except StoreError as exc:
                    request = checking.throw(exc)
                else:
                    request = checking.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]  # the generator's return value

    async def acheck(
        self,
        context: Mapping[str, object],
        *,
        route: str | None = None,
        operation: str | None = None,
        tier: str | None = None,
        cost: int | None = None,
    ) -> RateLimitResult:
        """:meth:`check` for asyncio code: the store is awaited, never blocking the loop."""
        checking = self._checking(context, route, operation, tier, cost)
        try:
            request = next(checking)
            while True:
                kind, hits = request
                try:
                    answer: Step | None = None
                    if kind == "hit":
                        answer = await self.store.ahit_many(hits)
                    else:
                        await self.store.arefund_many(hits)
                except StoreError as exc:
                    request = checking.throw(exc)
                else:
                    request = checking.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]  # the generator's return value

    # ------------------------------------------------------------------ the shared logic

    def _plan(
        self,
        context: Mapping[str, object],
        route: str | None,
        operation: str | None,
        tier: str | None,
        cost: int | None,
    ) -> list[list[_Planned]]:
        """The hits of a request, grouped by partition in file order."""
        if cost is not None and (type(cost) is not int or not 0 <= cost <= MAX_QUOTA):
            msg = f"cost must be a whole number from 0 to {MAX_QUOTA:,}, not {cost!r}"
            raise InvalidRequestError(msg, location="cost")
        if tier is None:
            seller = context.get("seller")
            found = seller.get("tier") if isinstance(seller, Mapping) else None
            tier = found if isinstance(found, str) else None
        groups: dict[str, list[_Planned]] = {}
        for policy in self.limits_for(route=route, operation=operation):
            if policy.when is not None and not policy.applies(context):
                continue
            key, partition = policy.counter(context)
            hit = Hit(
                key,
                policy.windows_for(tier),
                policy.cost if cost is None else cost,
                policy.algorithm,
                policy.shadow,
            )
            groups.setdefault(partition, []).append(_Planned(policy, hit))
        return list(groups.values())

    def _checking(
        self,
        context: Mapping[str, object],
        route: str | None,
        operation: str | None,
        tier: str | None,
        cost: int | None,
    ) -> Generator[Request, Step | None, RateLimitResult]:
        groups = self._plan(context, route, operation, tier, cost)
        decisions: list[RateLimitDecision] = []
        spent: list[tuple[bool, list[Hit]]] = []  # (in the shared store?, hits) per allowed group
        allowed = True
        for group in groups:
            hits = [p.hit for p in group]
            step: Step | None = None
            if self.store_available:
                try:
                    step = yield ("hit", hits)
                except StoreError as exc:
                    self._store_failed(exc)
                else:
                    self._store_answered()
            if step is not None:
                decisions.extend(
                    decide(p.policy, r, p.hit.windows) for p, r in zip(group, step.results, strict=True)
                )
                if step.allowed:
                    spent.append((True, hits))
                    continue
            else:
                group_allowed, group_decisions, local_hits = self._fallback(group)
                decisions.extend(group_decisions)
                if group_allowed:
                    spent.append((False, local_hits))
                    continue
            allowed = False
            break
        if not allowed:
            for shared, hits in spent:
                if not shared:
                    self.local_store.refund_many(hits)
                    continue
                try:
                    yield ("refund", hits)
                except StoreError as exc:
                    logger.warning("could not refund rate-limit units after a denial: %s", exc)
        return RateLimitResult(allowed, tuple(decisions))

    def _fallback(self, group: Sequence[_Planned]) -> tuple[bool, list[RateLimitDecision], list[Hit]]:
        """Decide a group by its limits' ``on_store_error`` modes; return (allowed, decisions, local hits)."""
        closed = [p for p in group if p.policy.on_store_error == "fail_closed"]
        local = [p for p in group if p.policy.on_store_error == "local"]
        blocked = any(not p.policy.shadow for p in closed)
        local_hits = [self._local_hit(p.hit) for p in local]
        if local_hits and not blocked:
            step = self.local_store.hit_many(local_hits)
            local_allowed, results = step.allowed, step.results
        else:  # nothing is spent: report the local windows at rest
            local_allowed, results = True, tuple(at_rest(h) for h in local_hits)
        local_results = dict(zip((id(p) for p in local), zip(results, local_hits, strict=True), strict=True))
        wait = self.retry_interval if self._down_until is None else max(self._down_until - self._clock(), 0.0)
        decisions = []
        for p in group:
            mode = p.policy.on_store_error
            if mode == "local":
                result, hit = local_results[id(p)]
                decisions.append(decide(p.policy, result, hit.windows, fallback="local"))
            elif mode == "fail_open":
                decisions.append(decide(p.policy, at_rest(p.hit), p.hit.windows, fallback="fail_open"))
            else:
                window = p.hit.windows[0]
                decisions.append(
                    RateLimitDecision(
                        allowed=p.policy.shadow,
                        limited=True,
                        limit=p.policy.name,
                        window=window,
                        windows=p.hit.windows,
                        remaining=0,
                        reset_after=wait,
                        retry_after=max(wait, 1e-6),
                        shadow=p.policy.shadow,
                        policy_version=p.policy.policy_version,
                        rule=p.policy.rule,
                        source=p.policy.source,
                        fallback="fail_closed",
                    )
                )
        allowed = not blocked and local_allowed
        return allowed, decisions, local_hits if allowed else []

    def _local_hit(self, hit: Hit) -> Hit:
        scaled = self._scaled.get(hit.windows)
        if scaled is None:
            scaled = tuple(
                dataclasses.replace(
                    w, quota=max(1, w.quota // self.replicas), burst=max(1, w.burst // self.replicas)
                )
                for w in hit.windows
            )
            self._scaled[hit.windows] = scaled
        return hit._replace(windows=scaled)

    def _store_failed(self, exc: StoreError) -> None:
        if isinstance(exc, StoreUnavailableError):
            if self._down_until is None:
                logger.warning(
                    "rate-limit store %s is unavailable; applying on_store_error modes for %ss: %s",
                    self.store.name,
                    self.retry_interval,
                    exc,
                )
            self._down_until = self._clock() + self.retry_interval
        else:
            logger.error(
                "rate-limit store %s failed; applying on_store_error modes: %s", self.store.name, exc
            )

    def _store_answered(self) -> None:
        if self._down_until is not None:
            logger.warning("rate-limit store %s is available again", self.store.name)
            self._down_until = None
