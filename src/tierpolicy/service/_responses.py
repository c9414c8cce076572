"""The shapes of the seller service's successful answers, for its OpenAPI document.

These models only describe: routes build their answers as plain JSON values (the
evaluate endpoint's must stay byte for byte what ``tierpolicy eval`` prints) and name
the model with :func:`success`, so nothing is re-serialised through them. Closed shapes
forbid other members (``additionalProperties: false``); members that are sometimes left
out (rather than ``null``) are optional and not nullable.
"""

from __future__ import annotations

import datetime as dt  # noqa: TC003  pydantic resolves the models' annotations at run time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import SkipJsonSchema

# The models' annotations are resolved at run time, so these are imported for real.
from tierpolicy.engine._classification import Category, Escalation, Severity  # noqa: TC001
from tierpolicy.engine._resilience import Jitter  # noqa: TC001
from tierpolicy.engine._retry import RetryReason  # noqa: TC001

__all__ = [
    "ACTIVATED",
    "ENTITLEMENTS",
    "ERROR_REGISTRY",
    "EVALUATION",
    "LIVE",
    "METRICS_RECORDED",
    "NOT_READY",
    "OVERRIDE",
    "OVERRIDES",
    "READY",
    "REEVALUATION",
    "SELLER",
    "TIER",
    "UPLOADED",
    "VERSION",
    "VERSIONS",
    "success",
]

Absent = SkipJsonSchema[None]
"""For a member that is left out, never ``null``: ``x: T | Absent = None`` documents ``T``, not required."""

NonNegative = Annotated[int, Field(ge=0)]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- envelopes


class Meta(_Closed):
    """What every successful answer says about itself."""

    request_id: str = Field(
        pattern=r"^[A-Za-z0-9._:-]{1,128}$", description="The request's id, also in the X-Request-ID header."
    )
    policy_version: str = Field(min_length=1, description="The policy version the replica served.")


def _enveloped(data: Any, name: str, doc: str) -> type[BaseModel]:  # noqa: ANN401  any model or type
    """``{"data": data, "meta": Meta}``, as the component ``name``."""
    model: type[BaseModel] = create_model(
        name,
        __config__=ConfigDict(extra="forbid", frozen=True),
        __doc__=doc,
        data=(data, ...),
        meta=(Meta, ...),
    )
    return model


def success(model: type[BaseModel], description: str, status: int = 200) -> dict[int | str, dict[str, Any]]:
    """A route's success response for ``responses=`` (with ``response_model=None``, so the bytes stay the route's).

    Args:
        model: The answer's model (one of this module's constants).
        description: What the answer is.
        status: The success status (201 for creations).
    """
    return {status: {"model": model, "description": description}}


# --------------------------------------------------------------------------- decisions


class TraceStep(_Closed):
    """One step the engine took on the way to a decision."""

    step: str
    outcome: Literal["pass", "fail", "skip", "error", "decide"]
    detail: str
    rule: str | None


class FeatureDecision(_Closed):
    """Whether a seller may use a feature (docs/evaluation.md, feature decision)."""

    feature: str
    outcome: Literal["allow", "deny"]
    allowed: bool
    reason: Literal[
        "TIER_MATCH",
        "CONDITION_MATCH",
        "ROLLOUT_INCLUDED",
        "OVERRIDE",
        "TIER_BELOW_MINIMUM",
        "TIER_NOT_LISTED",
        "CONDITION_FALSE",
        "CONDITION_ERROR",
        "ROLLOUT_EXCLUDED",
        "DISABLED",
    ]
    rule: str
    source: str
    tier: str
    policy_version: str
    message: str
    trace: list[TraceStep]


class LimitDecision(_Closed):
    """A numeric limit for a seller (docs/evaluation.md, limit decision)."""

    limit: str
    value: NonNegative | Literal["unlimited"]
    unlimited: bool
    unit: str
    reason: Literal["TIER_MATCH", "OVERRIDE"]
    rule: str
    source: str
    tier: str
    policy_version: str
    message: str
    trace: list[TraceStep]


class MissingClause(_Closed):
    """A clause of a tier's rule that the metrics do not meet."""

    clause: str
    attribute: str | None
    operator: str | None
    expected: Any = Field(description="The threshold, as JSON.")
    actual: Any = Field(description="The seller's value as JSON, null when absent.")
    error: str | None


class TierDecision(_Closed):
    """Which tier a seller's metrics qualify for, and what follows (docs/evaluation.md, tier decision)."""

    seller_id: str
    current_tier: str
    qualified_tier: str
    effective_tier: str
    action: Literal["upgrade", "keep", "downgrade_pending", "downgrade"]
    next_tier: str | None
    missing: list[MissingClause]
    keep_missing: list[MissingClause]
    downgrade_effective_at: dt.datetime | None
    reason: Literal["QUALIFIED", "FLOOR", "OVERRIDE", "CONDITION_ERROR"]
    rule: str
    source: str
    policy_version: str
    message: str
    trace: list[TraceStep]


class Entitlements(_Closed):
    """Every feature and limit of a seller, in policy order."""

    seller_id: str
    tier: str
    policy_version: str
    features: dict[str, FeatureDecision]
    limits: dict[str, LimitDecision]


class Classification(_Closed):
    """What an error is by the errors policy (docs/evaluation.md, classification)."""

    code: str
    category: Category
    status: int = Field(ge=100, le=599)
    retryable: bool
    severity: Severity
    escalation: Escalation
    title: str
    message: str
    type: str
    never_executed: bool
    retry_after: float | None = Field(ge=0)
    detail: str | None
    rule: str
    source: str
    policy_version: str
    trace: list[TraceStep]


class RetryClassification(_Closed):
    """The classification a retry plan rests on."""

    code: str
    category: Category
    retryable: bool
    never_executed: bool
    rule: str


class RetryPlan(_Closed):
    """What the executor would do after a failed attempt (docs/evaluation.md, retry queries)."""

    operation: str
    attempt: int = Field(ge=1)
    retry: bool
    reason: RetryReason
    delay: float = Field(ge=0)
    delay_min: float = Field(ge=0)
    delay_max: float = Field(ge=0)
    jitter: Jitter | None
    max_attempts: int | None
    deadline: float | None
    deadline_remaining: float | None
    retry_after: float | None
    idempotent: bool | None
    classification: RetryClassification
    rule: str | None
    source: str | None
    policy_version: str
    message: str
    trace: list[TraceStep]


# --------------------------------------------------------------------------- evaluation


class _Answered(_Closed):
    index: NonNegative
    id: str | int | Absent = None
    status: Literal["ok"]


class FeatureResult(_Answered):
    """The answer to a ``feature`` query."""

    kind: Literal["feature"]
    name: str
    decision: FeatureDecision


class LimitResult(_Answered):
    """The answer to a ``limit`` query."""

    kind: Literal["limit"]
    name: str
    decision: LimitDecision


class TierResult(_Answered):
    """The answer to a ``tier`` query."""

    kind: Literal["tier"]
    decision: TierDecision


class EntitlementsResult(_Answered):
    """The answer to an ``entitlements`` query."""

    kind: Literal["entitlements"]
    decision: Entitlements


class ClassifyResult(_Answered):
    """The answer to a ``classify`` query."""

    kind: Literal["classify"]
    decision: Classification


class RetryResult(_Answered):
    """The answer to a ``retry`` query."""

    kind: Literal["retry"]
    decision: RetryPlan


class UnknownName(_Closed):
    """A query named a feature or limit the policy set does not define."""

    type: Literal["UNKNOWN_FEATURE", "UNKNOWN_LIMIT", "UNKNOWN_TIER", "UNKNOWN_NAME"]
    message: str
    name: str
    suggestions: list[str]


class InvalidQuery(_Closed):
    """The query itself is malformed; ``location`` names the member."""

    type: Literal["INVALID_QUERY"]
    message: str
    location: str


class QueryFailure(_Closed):
    """The query could not be answered (the context, the policy set)."""

    type: Literal["INVALID_CONTEXT", "NO_ERRORS_POLICY", "EVALUATION_ERROR"]
    message: str


class FailedResult(_Closed):
    """A query that failed on its own; ``kind`` and ``name`` are there when the query had them well-formed."""

    index: NonNegative
    id: str | int | Absent = None
    kind: Literal["feature", "limit", "tier", "entitlements", "classify", "retry"] | Absent = None
    name: str | Absent = None
    status: Literal["error"]
    error: UnknownName | InvalidQuery | QueryFailure


class Evaluation(_Closed):
    """The answer of ``tierpolicy eval``: one result per query, in request order."""

    policy_version: str
    results: list[
        FeatureResult
        | LimitResult
        | TierResult
        | EntitlementsResult
        | ClassifyResult
        | RetryResult
        | FailedResult
    ]


# --------------------------------------------------------------------------- sellers


class Seller(_Closed):
    """A seller as stored."""

    seller_id: str
    tier: str
    tier_since: dt.datetime
    below_since: dt.datetime | None = Field(
        description="Since when the metrics qualify only for a lower tier (the grace period's start)."
    )
    attributes: dict[str, Any]


class TierHistoryEntry(_Closed):
    """One change of a seller's tier."""

    from_tier: str | None = Field(description="null for the first assignment.")
    to_tier: str
    reason: str
    at: dt.datetime
    policy_version: str | None = Field(description="The policy version that decided it, when a policy did.")


class SellerTier(Seller):
    """A seller's tier, what the metrics qualify for, and the latest changes, newest first."""

    qualification: TierDecision
    history: list[TierHistoryEntry]


class MetricsRecorded(_Closed):
    """A stored metrics snapshot."""

    seller_id: str
    taken_at: dt.datetime
    metrics: dict[str, float]


class Reevaluated(_Closed):
    """What re-evaluation did to one seller."""

    seller_id: str
    from_tier: str
    to_tier: str
    action: Literal["upgrade", "keep", "downgrade_pending", "downgrade"]
    changed: bool
    downgrade_effective_at: dt.datetime | None


class Reevaluation(_Closed):
    """Every seller re-evaluated, and how many changed tier."""

    results: list[Reevaluated]
    changed: NonNegative


class Override(_Closed):
    """A stored override."""

    id: int = Field(ge=1)
    seller_id: str
    kind: Literal["feature", "limit", "tier"]
    target: str
    value: bool | NonNegative | None = Field(
        description="Feature: true or false; limit: the value, null for unlimited; tier: null."
    )
    reason: str
    starts_at: dt.datetime | None
    expires_at: dt.datetime
    author: str
    created_at: dt.datetime


# --------------------------------------------------------------------------- policy versions


class VersionSummary(_Closed):
    """A stored policy version."""

    version: str
    digest: str
    author: str
    created_at: dt.datetime
    activated_at: dt.datetime | None = Field(description="When it was last activated (kept after it is not).")
    active: bool


class VersionWithFiles(VersionSummary):
    """A stored policy version with its files (name to YAML text)."""

    files: dict[str, str]


class Diagnostic(_Closed):
    """A problem found in a policy set, as ``tierpolicy check --format json`` gives it."""

    file: str
    line: int = Field(ge=1)
    column: int = Field(ge=1)
    severity: Literal["error", "warning", "info"]
    code: str
    message: str
    hint: str | None


class VersionUploaded(VersionSummary):
    """The version stored, with the warnings the check found."""

    warnings: list[Diagnostic]


class VersionActivated(VersionSummary):
    """The version now active, and the one this replica serves."""

    served: str


class ErrorCode(_Closed):
    """One entry of the error-code registry."""

    code: str
    category: Category
    status: int = Field(ge=100, le=599)
    retryable: bool
    severity: Severity
    title: str
    type: str


class ErrorRegistry(_Closed):
    """The error codes of the active policy set, in policy order (none without an errors policy)."""

    codes: list[ErrorCode]


# --------------------------------------------------------------------------- health


class Live(_Closed):
    """The process runs."""

    status: Literal["live"]


class ReloadFailure(_Closed):
    """The version activated that this replica could not load."""

    version: str
    error: str


class PolicyCheck(_Closed):
    """The policy set served (always loaded)."""

    ok: Literal[True]
    version: str
    reload_failed: ReloadFailure | Absent = None


class StoreUp(_Closed):
    """A store that answers."""

    ok: Literal[True]


class StoreDown(_Closed):
    """A store that does not answer, with the error's type."""

    ok: Literal[False]
    error: str


class ReadyChecks(_Closed):
    """Every check passed; ``redis`` only when ``REDIS_URL`` is set."""

    policy: PolicyCheck
    database: StoreUp
    redis: StoreUp | Absent = None


class Ready(_Closed):
    """Ready: the policy set is loaded and every store answers."""

    status: Literal["ready"]
    checks: ReadyChecks


class NotReadyChecks(_Closed):
    """What each check found; ``redis`` only when ``REDIS_URL`` is set."""

    policy: PolicyCheck
    database: StoreUp | StoreDown
    redis: StoreUp | StoreDown | Absent = None


class NotReady(_Closed):
    """Not ready: a store does not answer."""

    status: Literal["not ready"]
    checks: NotReadyChecks


# --------------------------------------------------------------------------- the answers

EVALUATION = _enveloped(Evaluation, "EvaluationAnswer", "The evaluation's answer, enveloped.")
SELLER = _enveloped(Seller, "SellerAnswer", "A seller, enveloped.")
ENTITLEMENTS = _enveloped(Entitlements, "EntitlementsAnswer", "A seller's entitlements, enveloped.")
TIER = _enveloped(SellerTier, "SellerTierAnswer", "A seller's tier, enveloped.")
METRICS_RECORDED = _enveloped(MetricsRecorded, "MetricsRecordedAnswer", "The snapshot stored, enveloped.")
REEVALUATION = _enveloped(Reevaluation, "ReevaluationAnswer", "The re-evaluation, enveloped.")
OVERRIDE = _enveloped(Override, "OverrideAnswer", "An override, enveloped.")
OVERRIDES = _enveloped(list[Override], "OverridesAnswer", "A seller's overrides, enveloped.")
VERSIONS = _enveloped(list[VersionSummary], "VersionsAnswer", "The stored versions, enveloped.")
VERSION = _enveloped(VersionWithFiles, "VersionAnswer", "One version with its files, enveloped.")
UPLOADED = _enveloped(VersionUploaded, "VersionUploadedAnswer", "The version uploaded, enveloped.")
ACTIVATED = _enveloped(VersionActivated, "VersionActivatedAnswer", "The version activated, enveloped.")
ERROR_REGISTRY = _enveloped(ErrorRegistry, "ErrorRegistryAnswer", "The error registry, enveloped.")
LIVE: type[BaseModel] = Live
READY: type[BaseModel] = Ready
NOT_READY: type[BaseModel] = NotReady
