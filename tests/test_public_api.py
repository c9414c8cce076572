"""Pins the public names of the package."""

import tierpolicy

EXPECTED = [
    "Action",
    "AsyncBreakerStore",
    "AttemptFailed",
    "AttemptStarted",
    "AttemptSucceeded",
    "AttemptTimeoutError",
    "BreakerState",
    "BreakerStore",
    "BreakerStoreFailed",
    "BreakerTransition",
    "BulkheadFullError",
    "CallRejectedError",
    "CheckResult",
    "CircuitOpenError",
    "Classification",
    "Code",
    "ConditionError",
    "Diagnostic",
    "Engine",
    "Entitlements",
    "ErrorInfo",
    "EvaluationError",
    "Executor",
    "ExpressionError",
    "ExpressionSyntaxError",
    "ExpressionTypeError",
    "FallbackCycleError",
    "FallbackFailed",
    "FallbackUsed",
    "FeatureDecision",
    "GaveUp",
    "Hit",
    "InMemoryBreakerStore",
    "InMemoryRateLimitStore",
    "InMemoryResultCache",
    "InvalidContextError",
    "InvalidRequestError",
    "LimitDecision",
    "MissingClause",
    "NoErrorsPolicyError",
    "Override",
    "PolicyDocument",
    "PolicyError",
    "PolicyHolder",
    "PolicyLoadError",
    "PolicySet",
    "Position",
    "RateLimitDecision",
    "RateLimitPolicy",
    "RateLimitResult",
    "RateLimitStore",
    "RateLimiter",
    "RateLimitsModel",
    "Reason",
    "ResilienceError",
    "RetryPlan",
    "RetryReason",
    "RetryScheduled",
    "StoreError",
    "StoreUnavailableError",
    "TierDecision",
    "TierpolicyError",
    "TraceStep",
    "UnknownFeatureError",
    "UnknownLimitError",
    "UnknownNameError",
    "UnknownTierError",
    "check",
    "check_rate_limit",
    "evaluate",
    "load",
    "load_files",
    "rollout_bucket",
]


def test_all_is_pinned_and_sorted():
    """__all__ lists exactly the curated public names, sorted."""
    assert tierpolicy.__all__ == EXPECTED
    assert sorted(tierpolicy.__all__) == tierpolicy.__all__


def test_every_public_name_exists():
    """Every name in __all__ is importable from the package."""
    for name in tierpolicy.__all__:
        assert getattr(tierpolicy, name) is not None
