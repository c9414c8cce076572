"""The engine: questions asked of one compiled policy set, and a holder that swaps sets."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from ._classification import Classification, ErrorModel
from ._context import ContextCoercion, parse_timestamp
from ._decisions import Entitlements, FeatureDecision, LimitDecision, TierDecision, TraceStep
from ._diagnostics import closest
from ._errorinfo import ErrorInfo, exception_names
from ._exceptions import (
    CallRejectedError,
    ConditionError,
    InvalidContextError,
    NoErrorsPolicyError,
    UnknownFeatureError,
    UnknownLimitError,
)
from ._loader import load as load_policy_set
from ._resilience import ResilienceModel
from ._retryplan import RetryPlan, plan_retry
from ._tiers import TierModel, active_overrides, iso

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence

    from ._overrides import Override
    from ._policyset import PolicySet


_UNUSED_NOW = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
"""Passed where no condition reads ``now``, to skip reading the clock on the hot path."""


def utc_now() -> dt.datetime:
    """The default clock: the current time in UTC."""
    return dt.datetime.now(dt.UTC)


_EMPTY_TIERS = TierModel(
    tiers=(),
    index={},
    features={},
    limits={},
    progression=None,
    overrides=(),
    overrides_by_seller={},
)


class Engine:
    """Answers feature, limit, tier and entitlement questions from one policy set.

    An engine is immutable and safe to share between threads and tasks. Every method
    takes the evaluation context (a mapping such as ``{"seller": {"id": "s-1", "tier":
    "gold", ...}, "metrics": {...}}``), an optional ``now`` (default: the engine's
    clock), optional runtime ``overrides`` and ``trace=True`` to record the steps tried.

    Args:
        policy_set: The compiled policy set.
        clock: Returns the current time (timezone-aware); injectable for tests.
    """

    __slots__ = (
        "_clock",
        "_coercion",
        "_features",
        "_limits",
        "_policy_overrides",
        "_tier_index",
        "_tiers",
        "policy_set",
    )

    def __init__(self, policy_set: PolicySet, *, clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.policy_set = policy_set
        self._clock = clock
        self._tiers = policy_set.tiers or _EMPTY_TIERS
        self._tier_index = self._tiers.index
        self._features = self._tiers.features
        self._limits = self._tiers.limits
        self._policy_overrides = self._tiers.overrides_by_seller
        self._coercion = ContextCoercion(policy_set.environment)

    @property
    def version(self) -> str:
        """The policy version every decision reports."""
        return self.policy_set.version

    @property
    def tiers(self) -> tuple[str, ...]:
        """Tier names, lowest first."""
        return self._tiers.tiers

    @property
    def features(self) -> tuple[str, ...]:
        """Feature names, in policy order."""
        return tuple(self._features)

    @property
    def limits(self) -> tuple[str, ...]:
        """Limit names, in policy order."""
        return tuple(self._limits)

    def coerce(self, context: Mapping[str, object]) -> dict[str, object]:
        """A JSON context with its timestamps and durations parsed, as the schema declares them.

        The questions below read timestamps and durations as ``datetime`` and
        ``timedelta`` values; a context straight from JSON goes through this first, as
        an evaluation request's does. The schema's plan is made once per engine.

        Raises:
            ValueError: A timestamp or duration string is malformed; the message names
                the attribute.
        """
        return self._coercion(context)

    @property
    def errors(self) -> ErrorModel | None:
        """The compiled Errors kind (registry and rules), or ``None`` if the set has none."""
        model = self.policy_set.models.get("Errors")
        return model if isinstance(model, ErrorModel) else None

    # ------------------------------------------------------------------ questions

    def check(
        self,
        feature: str,
        context: Mapping[str, object],
        *,
        now: dt.datetime | None = None,
        overrides: Sequence[Override] = (),
        trace: bool = False,
    ) -> FeatureDecision:
        """Decide whether the seller in ``context`` may use ``feature``.

        Raises:
            UnknownFeatureError: The policy set has no such feature.
            InvalidContextError: ``seller.id`` or ``seller.tier`` is missing or unknown.
        """
        compiled = self._features.get(feature)
        if compiled is None:
            raise UnknownFeatureError(feature, closest(feature, self._features))
        seller_id, tier_index = self._seller(context)
        if not (trace or overrides or seller_id in self._policy_overrides):
            # The common case: no override can apply and no trace is wanted.
            if compiled.static is not None:
                return compiled.static[tier_index]
            when = (now or self._clock()) if compiled.needs_now else _UNUSED_NOW
            if compiled.plain_condition and compiled.grants[tier_index]:
                # The common conditional case, without the general decide(); its error
                # path is left to decide(), which builds the CONDITION_ERROR decision.
                try:
                    holds = compiled.condition.evaluate(  # type: ignore[union-attr]
                        {**context, "now": when} if compiled.needs_now else context
                    )
                except ConditionError:
                    pass  # contextlib.suppress would cost more than the whole check
                else:
                    return (
                        compiled.outcome[tier_index] if holds is True else compiled.deny_condition[tier_index]
                    )
            return compiled.decide(tier_index, context, seller_id, when, None, None)
        when = now or self._clock()
        steps: list[TraceStep] | None = [] if trace else None
        tier_index, chosen = self._apply_overrides(seller_id, tier_index, when, overrides, steps)
        return compiled.decide(tier_index, context, seller_id, when, chosen.get(("feature", feature)), steps)

    def is_enabled(
        self, feature: str, context: Mapping[str, object], *, now: dt.datetime | None = None
    ) -> bool:
        """Shorthand for ``check(feature, context).allowed``."""
        return self.check(feature, context, now=now).allowed

    def limit(
        self,
        name: str,
        context: Mapping[str, object],
        *,
        now: dt.datetime | None = None,
        overrides: Sequence[Override] = (),
        trace: bool = False,
    ) -> LimitDecision:
        """Look up the numeric limit ``name`` for the seller in ``context``.

        Raises:
            UnknownLimitError: The policy set has no such limit.
            InvalidContextError: ``seller.id`` or ``seller.tier`` is missing or unknown.
        """
        compiled = self._limits.get(name)
        if compiled is None:
            raise UnknownLimitError(name, closest(name, self._limits))
        seller_id, tier_index = self._seller(context)
        steps: list[TraceStep] | None = [] if trace else None
        override = None
        if overrides or seller_id in self._policy_overrides:
            tier_index, chosen = self._apply_overrides(
                seller_id, tier_index, now or self._clock(), overrides, steps
            )
            override = chosen.get(("limit", name))
        return compiled.decide(tier_index, override, steps)

    def qualify(
        self,
        context: Mapping[str, object],
        *,
        now: dt.datetime | None = None,
        below_since: dt.datetime | None = None,
        overrides: Sequence[Override] = (),
        trace: bool = False,
    ) -> TierDecision:
        """Work out which tier the seller's metrics qualify for and what follows.

        Args:
            context: The evaluation context, with the metrics the progression rules read.
            now: The evaluation time.
            below_since: Since when the seller's metrics have qualified only for a lower
                tier (starts the grace period); read from ``seller.below_since`` in the
                context when not given, and taken as ``now`` when neither is set.
            overrides: Runtime overrides; a tier override pins the tier.
            trace: Record the steps tried.

        Raises:
            InvalidContextError: No progression rules, or ``seller`` is malformed.
        """
        progression = self._tiers.progression
        if progression is None:
            raise InvalidContextError("this policy set declares no progression rules")
        seller_id, tier_index = self._seller(context)
        when = now or self._clock()
        steps: list[TraceStep] | None = [] if trace else None
        tier_override = None
        if overrides or seller_id in self._policy_overrides:
            tier_index, chosen = self._apply_overrides(seller_id, tier_index, when, overrides, steps)
            tier_override = next((o for (kind, _), o in chosen.items() if kind == "tier"), None)
        if below_since is None:
            below_since = _below_since(context)
        return progression.qualify(seller_id, tier_index, context, when, below_since, tier_override, steps)

    def entitlements(
        self,
        context: Mapping[str, object],
        *,
        now: dt.datetime | None = None,
        overrides: Sequence[Override] = (),
        trace: bool = False,
    ) -> Entitlements:
        """Every feature decision and limit for the seller in ``context``, in one call."""
        seller_id, tier_index = self._seller(context)
        when = now or self._clock()
        chosen: dict[tuple[str, str], Override] = {}
        # Tier-override steps apply to every decision; each trace starts with them.
        prefix: list[TraceStep] = []
        if overrides or seller_id in self._policy_overrides:
            tier_index, chosen = self._apply_overrides(seller_id, tier_index, when, overrides, prefix)
        features: dict[str, FeatureDecision] = {}
        for name, compiled in self._features.items():
            override = chosen.get(("feature", name))
            if compiled.static is not None and override is None and not trace:
                features[name] = compiled.static[tier_index]
            else:
                steps: list[TraceStep] | None = list(prefix) if trace else None
                features[name] = compiled.decide(tier_index, context, seller_id, when, override, steps)
        limits = {
            name: lim.decide(tier_index, chosen.get(("limit", name)), list(prefix) if trace else None)
            for name, lim in self._limits.items()
        }
        return Entitlements(seller_id, self._tiers.tiers[tier_index], features, limits, self.version)

    def classify(
        self, error: BaseException | ErrorInfo, *, operation: str | None = None, trace: bool = False
    ) -> Classification:
        """Classify an exception (or an error description) by the set's Errors rules.

        Args:
            error: The exception caught, or an :class:`ErrorInfo` describing it.
            operation: The operation that failed, e.g. ``payments.capture``; overrides
                the one ``error`` names, if any.
            trace: Record every rule tried.

        Raises:
            NoErrorsPolicyError: The policy set has no Errors document.
        """
        model = self.policy_set.models.get("Errors")
        if not isinstance(model, ErrorModel):
            raise NoErrorsPolicyError
        if isinstance(error, ErrorInfo):
            info = error if operation is None else error.with_operation(operation)
        else:
            info = ErrorInfo.from_exception(error, operation=operation)
        return model.classify(info, trace=trace)

    def retry_plan(
        self,
        operation: str,
        error: BaseException | ErrorInfo,
        *,
        attempt: int,
        elapsed: float = 0.0,
        previous_delay: float | None = None,
        trace: bool = False,
    ) -> RetryPlan:
        """Say what the executor would do after attempt ``attempt`` of ``operation`` failed.

        Classifies ``error`` for ``operation``, looks up the operation's resilience
        policy and decides by the executor's rules, without sleeping, without touching
        a retry budget or breaker, and without randomness: the same question always
        gets the same plan. ``delay`` is the un-jittered backoff (or the honoured
        Retry-After, when longer); ``delay_min``/``delay_max`` give the jitter's range.
        An operation no pattern matches gets a plan with reason ``NO_RETRY_POLICY``.

        Args:
            operation: The operation whose attempt failed, e.g. ``payments.capture``.
            error: The exception it raised, or an :class:`ErrorInfo` describing it.
            attempt: The number of the attempt that failed (1 for the first call).
            elapsed: Seconds since the first attempt started (for the deadline).
            previous_delay: The last backoff of this call, for decorrelated jitter.
            trace: Record the classification rules tried and the retry steps.

        Raises:
            NoErrorsPolicyError: The policy set has no Errors document.
            ValueError: ``attempt`` is not a whole number >= 1, or ``elapsed`` or
                ``previous_delay`` is not a finite number of seconds >= 0.
        """
        if not operation:
            msg = f"operation must be a non-empty string; got {operation!r}"
            raise ValueError(msg)
        classification = self.classify(error, operation=operation, trace=trace)
        # As the executor: its own refusals (an open breaker, a full bulkhead) never ran.
        if isinstance(error, ErrorInfo):
            rejected = _CALL_REJECTED in error.types
        else:
            rejected = isinstance(error, CallRejectedError)
        model = self.policy_set.models.get("Resilience")
        policy = model.policy_for(operation) if isinstance(model, ResilienceModel) else None
        return plan_retry(
            operation,
            policy,
            classification,
            never_executed=classification.never_executed or rejected,
            attempt=attempt,
            elapsed=elapsed,
            previous_delay=previous_delay,
            policy_version=self.version,
            steps=list(classification.trace) if trace else None,
        )

    # ------------------------------------------------------------------ helpers

    def _seller(self, context: Mapping[str, object]) -> tuple[str, int]:
        try:
            seller: Any = context["seller"]
            seller_id = seller["id"]
            index = self._tier_index[seller["tier"]]
        except (KeyError, TypeError, IndexError):
            pass
        else:
            if type(seller_id) is str and seller_id:
                return seller_id, index
        return self._invalid_seller(context)

    def _invalid_seller(self, context: Mapping[str, object]) -> NoReturn:
        """Raise the InvalidContextError that says what is wrong with ``seller``."""
        seller = context.get("seller")
        if not isinstance(seller, Mapping):
            raise InvalidContextError("the context needs a 'seller' object with 'id' and 'tier'")
        seller_id = seller.get("id")
        tier = seller.get("tier")
        if not isinstance(seller_id, str) or not seller_id:
            raise InvalidContextError("the context needs 'seller.id' (a non-empty string)")
        if not isinstance(tier, str):
            raise InvalidContextError("the context needs 'seller.tier' (a string naming a tier)")
        index = self._tier_index.get(tier)
        if index is None:
            hint = closest(tier, self._tier_index, n=1)
            more = f"; did you mean {hint[0]!r}?" if hint else f"; tiers: {', '.join(self._tiers.tiers)}"
            raise InvalidContextError(f"seller.tier {tier!r} is not a tier of this policy set{more}")
        raise InvalidContextError("the context's 'seller' object is malformed")  # pragma: no cover

    def _apply_overrides(
        self,
        seller_id: str,
        tier_index: int,
        now: dt.datetime,
        overrides: Sequence[Override],
        trace: list[TraceStep] | None,
    ) -> tuple[int, dict[tuple[str, str], Override]]:
        chosen = active_overrides(self._policy_overrides.get(seller_id, ()), overrides, seller_id, now)
        for (kind, target), override in chosen.items():
            if kind == "tier":
                index = self._tier_index.get(target)
                if index is None:
                    # A stored override can outlive the tier it names (the policy changed
                    # since): ignore it, as overrides of removed features and limits are.
                    if trace is not None:
                        trace.append(
                            TraceStep(
                                "override",
                                "skip",
                                f"ignored: tier {target!r} no longer exists",
                                override.rule,
                            )
                        )
                    continue
                if trace is not None:
                    trace.append(
                        TraceStep(
                            "override",
                            "pass",
                            f"tier {target} by override until {iso(override.expires_at)} ({override.reason})",
                            override.rule,
                        )
                    )
                tier_index = index
        return tier_index, chosen


_CALL_REJECTED = exception_names(CallRejectedError)[0]
"""How an ErrorInfo's ``types`` name the executor's refusals (and their subclasses)."""


def _below_since(context: Mapping[str, object]) -> dt.datetime | None:
    seller = context.get("seller")
    value = seller.get("below_since") if isinstance(seller, Mapping) else None
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return parse_timestamp(value, "seller.below_since")
        except ValueError as exc:
            raise InvalidContextError(str(exc)) from exc
    raise InvalidContextError("seller.below_since must be a timestamp")


def load(path: str | os.PathLike[str], *, clock: Callable[[], dt.datetime] = utc_now) -> Engine:
    """Load the policy set at ``path`` and return an engine for it.

    Raises:
        PolicyLoadError: With every diagnostic, when the set does not load.
    """
    return Engine(load_policy_set(path), clock=clock)


class PolicyHolder:
    """Holds the current engine and swaps in new policy sets atomically.

    Readers take :attr:`engine` (one attribute read, atomic in CPython) and keep using
    that engine for the whole request, so a swap never mixes two versions in one
    answer. A set that fails to load never replaces the current one.

    Args:
        engine: The engine to start with.
        loader: Builds an engine from a path; :func:`load` by default.
    """

    def __init__(self, engine: Engine, *, loader: Callable[[str | os.PathLike[str]], Engine] = load) -> None:
        self._engine = engine
        self._loader = loader
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The current engine."""
        return self._engine

    def swap(self, engine: Engine) -> Engine:
        """Install ``engine`` and return the one it replaced."""
        with self._lock:
            previous, self._engine = self._engine, engine
        return previous

    def reload(self, path: str | os.PathLike[str]) -> Engine:
        """Load ``path`` and install it; on failure keep the current engine and re-raise.

        Raises:
            tierpolicy.PolicyLoadError: The new set did not load; nothing changed.
        """
        with self._lock:
            engine = self._loader(path)  # raises before anything is replaced
            self._engine = engine
            return engine
