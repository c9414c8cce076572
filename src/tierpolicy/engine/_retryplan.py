"""Retry plans: what the executor would do after a failed attempt, asked without running it.

:func:`plan_retry` takes a classified error and the operation's resilience policy and
answers with a :class:`RetryPlan`: retry or not, after how long, and why. It uses the
executor's own rules (:func:`~tierpolicy.engine._retry.decide_retry`) but never sleeps,
never touches a retry budget or a breaker, and never draws a random number, so the same
question always gets the same answer:

* seconds are rounded to the microsecond;
* ``delay`` is the un-jittered backoff (the longest the jitter mode can give), raised to
  the server's Retry-After hint when the policy honours it, as the executor does;
* ``delay_min`` and ``delay_max`` are the range the executor's jittered sleep falls in
  (raised to the hint the same way);
* the deadline is tested against ``delay``, so ``retry: true`` holds for every jitter
  draw. When only the short end of the range fits before the deadline, the plan says
  ``DEADLINE`` although a lucky draw would let the executor retry.

See ``docs/evaluation.md`` (``retry`` queries).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Final

from ._decisions import TraceStep
from ._retry import RetryDecision, RetryReason, decide_retry

if TYPE_CHECKING:
    from ._classification import Classification
    from ._resilience import OperationPolicy


class _Longest:
    """A "random" source that always gives the top of the jitter range: the un-jittered delay."""

    __slots__ = ()

    def random(self) -> float:
        """1.0: ``low + (high - low) * 1.0`` is ``high``."""
        return 1.0


_LONGEST: Final = _Longest()


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPlan:
    """What the executor would do after attempt ``attempt`` of ``operation`` failed.

    Attributes:
        operation: The operation whose attempt failed, e.g. ``payments.capture``.
        attempt: The number of the attempt that failed (1 for the first call).
        retry: Whether the executor would make attempt ``attempt + 1``.
        reason: Why (``RETRY``, ``NOT_RETRYABLE``, ``DEADLINE``, ...).
        delay: Seconds before the next attempt: the un-jittered backoff, or the
            honoured Retry-After hint when longer; 0 when not retrying.
        delay_min: The shortest sleep the executor's jitter could give (seconds).
        delay_max: The longest (equal to ``delay`` when retrying).
        jitter: The jitter mode (``none``, ``full``, ``equal``, ``decorrelated``), or
            ``None`` without a retry policy.
        max_attempts: The policy's maximum attempts (counting the first), or ``None``.
        deadline: The policy's overall deadline in seconds, or ``None``.
        deadline_remaining: Seconds of that deadline left after ``elapsed``, or ``None``.
        retry_after: The server's Retry-After hint as the policy honours it (capped by
            ``max_retry_after``); ``None`` when there is none or it is not honoured.
        idempotent: Whether the operation is declared idempotent (``None``: no policy).
        never_executed: Whether the error proves the request never reached the server
            (the registry says so, or the executor itself refused the call).
        classification: The error's full classification.
        rule: The resilience rule that applies, ``resilience:<pattern>``; ``None``
            when no pattern matches the operation.
        source: Where that pattern is defined (``FILE:LINE:COL``), or ``None``.
        policy_version: The version of the policy set that decided.
        message: A one-line explanation for people.
        trace: The classification rules tried and the retry steps, when requested.
    """

    operation: str
    attempt: int
    retry: bool
    reason: RetryReason
    delay: float
    delay_min: float
    delay_max: float
    jitter: str | None
    max_attempts: int | None
    deadline: float | None
    deadline_remaining: float | None
    retry_after: float | None
    idempotent: bool | None
    never_executed: bool
    classification: Classification
    rule: str | None
    source: str | None
    policy_version: str
    message: str
    trace: tuple[TraceStep, ...] = ()

    @property
    def code(self) -> str:
        """The error code the error was classified as."""
        return self.classification.code

    @property
    def category(self) -> str:
        """The error's category."""
        return self.classification.category

    @property
    def retryable(self) -> bool:
        """Whether the registry calls the error retryable."""
        return self.classification.retryable

    def to_json(self) -> dict[str, object]:
        """Return the JSON form used by ``tierpolicy eval`` and the HTTP API."""
        classification = self.classification
        return {
            "operation": self.operation,
            "attempt": self.attempt,
            "retry": self.retry,
            "reason": self.reason.value,
            "delay": self.delay,
            "delay_min": self.delay_min,
            "delay_max": self.delay_max,
            "jitter": self.jitter,
            "max_attempts": self.max_attempts,
            "deadline": self.deadline,
            "deadline_remaining": self.deadline_remaining,
            "retry_after": self.retry_after,
            "idempotent": self.idempotent,
            "classification": {
                "code": classification.code,
                "category": classification.category,
                "retryable": classification.retryable,
                "never_executed": self.never_executed,
                "rule": classification.rule,
            },
            "rule": self.rule,
            "source": self.source,
            "policy_version": self.policy_version,
            "message": self.message,
            "trace": [step.to_json() for step in self.trace],
        }


def check_seconds(value: object, name: str) -> float:
    """``value`` as seconds: a finite number >= 0.

    Raises:
        ValueError: Naming ``name`` when it is not.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        msg = f"{name} must be a finite number of seconds >= 0; got {value!r}"
        raise ValueError(msg)
    return float(value)


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def plan_retry(
    operation: str,
    policy: OperationPolicy | None,
    classification: Classification,
    *,
    never_executed: bool,
    attempt: int,
    elapsed: float,
    previous_delay: float | None,
    policy_version: str,
    steps: list[TraceStep] | None,
) -> RetryPlan:
    """Decide as the executor would after attempt ``attempt`` failed with ``classification``.

    ``policy`` is the operation's resilience policy (``None`` when no pattern matches);
    ``steps`` collects the trace (``None``: no trace).

    Raises:
        ValueError: ``attempt`` is not a whole number >= 1, or ``elapsed`` or
            ``previous_delay`` is not a finite number of seconds >= 0.
    """
    if not _is_whole(attempt) or attempt < 1:
        msg = f"attempt must be a whole number >= 1 (the attempt that failed); got {attempt!r}"
        raise ValueError(msg)
    elapsed = check_seconds(elapsed, "elapsed")
    if previous_delay is not None:
        previous_delay = check_seconds(previous_delay, "previous_delay")
    retry = policy.retry if policy is not None else None
    if steps is not None:
        if policy is None:
            steps.append(TraceStep("resilience", "fail", f"no resilience pattern matches {operation}"))
        else:
            steps.append(
                TraceStep(
                    "resilience", "pass", f"{operation} uses the policy of {policy.pattern}", policy.rule
                )
            )
    hint = None
    if retry is not None and retry.honor_retry_after and classification.retry_after is not None:
        hint = classification.retry_after
        if retry.max_retry_after is not None:
            hint = min(hint, retry.max_retry_after)
    if policy is None:
        decision = RetryDecision(
            retry=False, delay=0.0, reason=RetryReason.NO_RETRY_POLICY, attempt=attempt + 1
        )
    else:
        decision = decide_retry(
            policy,
            retryable=classification.retryable,
            category=classification.category,
            never_executed=never_executed,
            failed_attempt=attempt,
            elapsed=elapsed,
            previous_delay=previous_delay,
            retry_after=classification.retry_after,
            random=_LONGEST,
            budget=None,
        )
    low, high = decision.delay_bounds  # (0, 0) when it gave up before any backoff
    if hint is not None and decision.reason in _DELAYED:
        low, high = max(low, hint), max(high, hint)
    deadline = retry.deadline if retry is not None else None
    remaining = None if deadline is None else _rounded(max(0.0, deadline - elapsed))
    plan = RetryPlan(
        operation=operation,
        attempt=attempt,
        retry=decision.retry,
        reason=decision.reason,
        delay=_rounded(decision.delay),
        delay_min=_rounded(low),
        delay_max=_rounded(high),
        jitter=retry.jitter if retry is not None else None,
        max_attempts=retry.max_attempts if retry is not None else None,
        deadline=deadline,
        deadline_remaining=remaining,
        retry_after=hint,
        idempotent=policy.idempotent if policy is not None else None,
        never_executed=never_executed,
        classification=classification,
        rule=policy.rule if policy is not None else None,
        source=policy.source if policy is not None else None,
        policy_version=policy_version,
        message="",
    )
    message = _message(plan, policy)
    if steps is not None:
        steps.append(
            TraceStep(
                "retry", "decide" if plan.retry else "fail", f"{plan.reason.value}: {message}", plan.rule
            )
        )
    # The plan is still under construction (nobody else holds it): finishing it in place
    # costs a fraction of dataclasses.replace, which would build all twenty fields again.
    object.__setattr__(plan, "message", message)
    if steps is not None:
        object.__setattr__(plan, "trace", tuple(steps))
    return plan


_DELAYED: Final = frozenset(
    {RetryReason.RETRY, RetryReason.DEADLINE, RetryReason.RETRY_AFTER_EXCEEDS_DEADLINE}
)
"""The reasons decided once the backoff is known: their plans report its range (from
:func:`~tierpolicy.engine._retry.delay_bounds`, raised to an honoured Retry-After)."""


def _rounded(seconds: float) -> float:
    """Seconds to the microsecond: ``0.15``, not ``0.15000000000000002``."""
    return round(seconds, 6)


def _seconds(value: float | None) -> str:
    return "no" if value is None else f"{value:g}s"


def _message(plan: RetryPlan, policy: OperationPolicy | None) -> str:
    reason = plan.reason
    code = plan.classification.code
    if reason is RetryReason.RETRY:
        if plan.retry_after is not None and plan.retry_after >= plan.delay:
            wait = f"after {_seconds(plan.delay)} (the server's Retry-After)"
        elif plan.delay_min == plan.delay_max:
            wait = f"after {_seconds(plan.delay)}"
        else:
            wait = (
                f"after {_seconds(plan.delay)} without jitter; with {plan.jitter} jitter "
                f"between {_seconds(plan.delay_min)} and {_seconds(plan.delay_max)}"
            )
        return f"{code} is retryable: make attempt {plan.attempt + 1} of {plan.max_attempts} {wait}"
    if reason is RetryReason.NO_RETRY_POLICY:
        if policy is None:
            return f"no resilience pattern matches {plan.operation}: it gets one attempt only"
        return f"{plan.operation} has no retry policy: it gets one attempt only"
    if reason is RetryReason.NOT_RETRYABLE:
        return f"{code} is not retryable"
    if reason is RetryReason.CATEGORY_EXCLUDED:
        categories = sorted(policy.retry.categories or ()) if policy and policy.retry else []
        return (
            f"{code} is in category {plan.classification.category}; only {', '.join(categories)} are retried"
        )
    if reason is RetryReason.NOT_IDEMPOTENT:
        return (
            f"{plan.operation} is not idempotent and {code} does not prove the request never "
            "reached the server"
        )
    if reason is RetryReason.ATTEMPTS_EXHAUSTED:
        return f"attempt {plan.attempt} was the last of {plan.max_attempts}"
    if reason is RetryReason.RETRY_AFTER_EXCEEDS_DEADLINE:
        asked = plan.classification.retry_after
        capped = "" if asked == plan.retry_after else f" ({_seconds(plan.retry_after)} with the policy's cap)"
        return (
            f"the server asked to wait {_seconds(asked)}{capped} but the deadline leaves "
            f"{_seconds(plan.deadline_remaining)}"
        )
    if reason is RetryReason.DEADLINE:
        return (
            f"a backoff of up to {_seconds(plan.delay_max)} would end at or past the deadline "
            f"({_seconds(plan.deadline_remaining)} left)"
        )
    return f"{reason.value}"  # pragma: no cover  budgets are never consulted by a plan
