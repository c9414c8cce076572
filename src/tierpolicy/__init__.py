"""tierpolicy: declarative seller-tier, error, resilience and rate-limit policies.

Load a policy directory once, then ask in-process questions::

    import tierpolicy

    engine = tierpolicy.load("policies/")
    decision = engine.check("listing.promoted", {"seller": {"id": "s-1", "tier": "gold"}})
    decision.allowed, decision.reason, decision.policy_version
"""

from __future__ import annotations

from .engine._breaker import AsyncBreakerStore, BreakerState, BreakerStore, InMemoryBreakerStore
from .engine._classification import Classification
from .engine._decisions import (
    Action,
    Entitlements,
    FeatureDecision,
    LimitDecision,
    MissingClause,
    Reason,
    TierDecision,
    TraceStep,
)
from .engine._diagnostics import Code, Diagnostic, Position
from .engine._engine import Engine, PolicyHolder, load
from .engine._errorinfo import ErrorInfo
from .engine._evaluation import evaluate
from .engine._exceptions import (
    AttemptTimeoutError,
    AuthenticationFailedError,
    BulkheadFullError,
    CallRejectedError,
    CircuitOpenError,
    ConditionError,
    EvaluationError,
    ExpressionError,
    ExpressionSyntaxError,
    ExpressionTypeError,
    FallbackCycleError,
    InvalidContextError,
    InvalidRequestError,
    NoErrorsPolicyError,
    PermissionDeniedError,
    PolicyError,
    PolicyLoadError,
    ProblemNotFoundError,
    RateLimitedError,
    ResilienceError,
    ServiceProblemError,
    ServiceUnavailableError,
    StoreError,
    StoreUnavailableError,
    TierpolicyError,
    UnknownFeatureError,
    UnknownLimitError,
    UnknownNameError,
    UnknownTierError,
)
from .engine._executor import (
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    BreakerStoreFailed,
    BreakerTransition,
    Executor,
    FallbackFailed,
    FallbackUsed,
    GaveUp,
    InMemoryResultCache,
    RetryScheduled,
)
from .engine._gcra import GcraWindow, RateLimitDecision
from .engine._loader import CheckResult, check, load_files
from .engine._overrides import Override
from .engine._policyset import PolicyDocument, PolicySet
from .engine._ratelimit_store import Hit, InMemoryRateLimitStore, RateLimitStore, check_rate_limit
from .engine._ratelimiter import RateLimiter, RateLimitResult
from .engine._ratelimits import RateLimitPolicy, RateLimitsModel
from .engine._retry import RetryReason
from .engine._retryplan import RetryPlan
from .engine._rollout import rollout_bucket

__all__ = [
    "Action",
    "AsyncBreakerStore",
    "AttemptFailed",
    "AttemptStarted",
    "AttemptSucceeded",
    "AttemptTimeoutError",
    "AuthenticationFailedError",
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
    "GcraWindow",
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
    "PermissionDeniedError",
    "PolicyDocument",
    "PolicyError",
    "PolicyHolder",
    "PolicyLoadError",
    "PolicySet",
    "Position",
    "ProblemNotFoundError",
    "RateLimitDecision",
    "RateLimitPolicy",
    "RateLimitResult",
    "RateLimitStore",
    "RateLimitedError",
    "RateLimiter",
    "RateLimitsModel",
    "Reason",
    "ResilienceError",
    "RetryPlan",
    "RetryReason",
    "RetryScheduled",
    "ServiceProblemError",
    "ServiceUnavailableError",
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
