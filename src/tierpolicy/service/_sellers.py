"""The store-backed seller routes: sellers, entitlements, tiers, metrics, re-evaluation, overrides.

Each route reads the seller from the SQL store, builds the evaluation context the
policies expect (``seller.*`` from the stored attributes plus id, tier and
``below_since``; ``metrics.*`` from the latest snapshot) and the seller's active
overrides, and asks the engine. Database calls are synchronous SQLAlchemy, so these
routes are plain ``def`` functions that FastAPI runs in its thread pool, never on the
event loop.

Tier re-evaluation follows the tier decision: an upgrade is applied at once, a
downgrade only once its grace period has passed (the start of the grace period is
stored as ``below_since``), and a seller back in line loses its pending downgrade.
Every change writes tier history; running it twice changes nothing the second time.
"""

from __future__ import annotations

import datetime as dt  # noqa: TC003  pydantic resolves the models' annotations at run time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tierpolicy.adapters.sqlalchemy import Audit, ConflictError, NotFoundError
from tierpolicy.engine._context import value_problem
from tierpolicy.engine._decisions import Action
from tierpolicy.engine._diagnostics import did_you_mean
from tierpolicy.engine._evaluation import value_by_kind
from tierpolicy.engine._tiers import iso
from tierpolicy.engine.cel import ObjectType

from ._auth import Principal, require_roles, seller_access, seller_not_found
from ._cache import seconds_until_change
from ._envelope import envelope
from ._events import (
    Event,
    announce,
    downgrade_cancelled,
    downgrade_pending,
    metrics_recorded,
    override_event,
    seller_updated,
    tier_change,
    tier_changed,
)
from ._problems import PROBLEM_RESPONSES, ServiceError, request_id, semantic_refusal
from ._responses import (
    ENTITLEMENTS,
    METRICS_RECORDED,
    OVERRIDE,
    OVERRIDES,
    REEVALUATION,
    SELLER,
    TIER,
    success,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from tierpolicy.adapters.sqlalchemy import Database, OverrideRecord, SellerRecord, TierChange
    from tierpolicy.engine._engine import Engine
    from tierpolicy.engine._overrides import Override

    from ._cache import SellerCache

SellerId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]

Reader = Depends(require_roles("seller", "admin", "service"))
Writer = Depends(require_roles("admin", "service"))
Admin = Depends(require_roles("admin"))


class SellerIn(BaseModel):
    """A seller to create or replace."""

    model_config = ConfigDict(extra="forbid")

    tier: str = Field(min_length=1, max_length=64)
    attributes: dict[str, Any] = Field(default_factory=dict)


class MetricsIn(BaseModel):
    """A metrics snapshot of one seller."""

    model_config = ConfigDict(extra="forbid")

    metrics: dict[str, float | int]
    taken_at: dt.datetime | None = None


class ReevaluateIn(BaseModel):
    """Which sellers to re-evaluate (all when ``seller_ids`` is left out)."""

    model_config = ConfigDict(extra="forbid")

    seller_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, max_length=10_000
    )


class OverrideIn(BaseModel):
    """An exception to the tier rules for one seller."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=value_by_kind({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]}),
    )

    kind: str = Field(pattern="^(feature|limit|tier)$")
    target: str = Field(min_length=1, max_length=128)
    value: bool | int | None = None
    reason: str = Field(min_length=1, max_length=1000)
    expires_at: dt.datetime
    starts_at: dt.datetime | None = None


def _db(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.holder.engine
    return engine


def audit_of(request: Request, principal: Principal) -> Audit:
    """Who does an admin change, for the audit log: the token's subject and the request id."""
    return Audit(actor=principal.subject, request_id=request_id(request) or None)


def _seller(db: Database, seller_id: str) -> SellerRecord:
    try:
        return db.get_seller(seller_id)
    except NotFoundError:
        # The very answer a seller token gets for another seller: existence never leaks.
        raise seller_not_found() from None


def iso_or_none(moment: dt.datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z`` (as decisions render times), or ``None``."""
    return None if moment is None else iso(moment)


def _seller_json(seller: SellerRecord) -> dict[str, object]:
    return {
        "seller_id": seller.seller_id,
        "tier": seller.tier,
        "tier_since": iso_or_none(seller.tier_since),
        "below_since": iso_or_none(seller.below_since),
        "attributes": dict(seller.attributes),
    }


def _override_json(record: OverrideRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "seller_id": record.seller_id,
        "kind": record.kind,
        "target": record.target,
        "value": record.value,
        "reason": record.reason,
        "starts_at": iso_or_none(record.starts_at),
        "expires_at": iso_or_none(record.expires_at),
        "author": record.author,
        "created_at": iso_or_none(record.created_at),
    }


def _unknown(what: str, name: str, known: Iterable[str], locations: Sequence[str]) -> ServiceError:
    """The 422 for a name the active policy set does not define: a did-you-mean, or every known name.

    A misspelt name would otherwise be stored and then silently never apply.
    """
    names = sorted(known)
    hint = did_you_mean(name, names)
    listing = f"{what}s: {', '.join(names)}" if names else f"the policy set defines no {what}s"
    return ServiceError(
        "VALIDATION_FAILED",
        f"unknown {what} {name!r}; {hint or listing}",
        status=422,
        extra={"errors": [{"location": where, "message": f"unknown {what}"} for where in locations]},
    )


def _check_override_target(engine: Engine, body: OverrideIn) -> None:
    """Refuse an override of a feature, limit or tier the active policy set does not define.

    The same rule ``tierpolicy check`` applies to overrides written in the policy files
    (TP404, TP405, TP400); for a tier, it would pin the seller to a tier that does not exist.
    """
    model = engine.policy_set.tiers
    known: tuple[str, ...] = ()
    if model is not None:
        known = {"feature": tuple(model.features), "limit": tuple(model.limits), "tier": model.tiers}[
            body.kind
        ]
    if body.target not in known:
        raise _unknown(body.kind, body.target, known, ["body/target"])


_NOT_ATTRIBUTES = ("id", "tier", "below_since")
"""Seller fields the store keeps apart from the attributes (the path, ``tier``, and the grace period's start)."""


def _check_attributes(engine: Engine, attributes: Mapping[str, object]) -> None:
    """Refuse seller attributes the policies' context does not declare, or values of another type.

    Either would be stored and then fail, or never apply, in every condition reading it.
    """
    declared = engine.policy_set.environment.get("seller")
    fields = declared.fields if isinstance(declared, ObjectType) else {}
    settable = {name: kind for name, kind in fields.items() if name not in _NOT_ATTRIBUTES}
    for name, value in attributes.items():
        if name in _NOT_ATTRIBUTES:
            raise ServiceError(
                "VALIDATION_FAILED",
                f"{name!r} is not an attribute: "
                + ("send the tier as 'tier'" if name == "tier" else f"the store keeps {name!r} itself"),
                status=422,
                extra={"errors": [{"location": f"body/attributes/{name}", "message": "not an attribute"}]},
            )
        if name not in settable:
            raise _unknown("seller attribute", name, settable, [f"body/attributes/{name}"])
        problem = value_problem(value, settable[name], f"seller.{name}")
        if problem is not None:
            raise ServiceError(
                "VALIDATION_FAILED",
                problem,
                status=422,
                extra={"errors": [{"location": f"body/attributes/{name}", "message": problem}]},
            )


def _check_metric_names(engine: Engine, metrics: Mapping[str, object]) -> None:
    """Refuse metric names the policies' context does not declare."""
    declared = engine.policy_set.environment.get("metrics")
    if not isinstance(declared, ObjectType):
        return
    unknown = [name for name in metrics if name not in declared.fields]
    if unknown:
        raise _unknown("metric", unknown[0], declared.fields, [f"body/metrics/{name}" for name in unknown])


def evaluation_input(
    engine: Engine, db: Database, seller: SellerRecord
) -> tuple[dict[str, object], list[Override]]:
    """The context and overrides the engine needs for ``seller``, from the store."""
    metrics = db.latest_metrics(seller.seller_id)
    raw: dict[str, object] = {
        "seller": {**seller.attributes, "id": seller.seller_id, "tier": seller.tier},
        "metrics": dict(metrics.metrics) if metrics is not None else {},
    }
    try:
        context = engine.coerce(raw)
    except ValueError as exc:
        raise ServiceError(
            "VALIDATION_FAILED", f"the stored seller does not fit the policies' context: {exc}", status=422
        ) from None
    if seller.below_since is not None:
        seller_part = context["seller"]
        assert isinstance(seller_part, dict)  # noqa: S101  built just above
        seller_part["below_since"] = seller.below_since
    overrides = [record.to_override() for record in db.list_overrides(seller_id=seller.seller_id)]
    return context, overrides


def reevaluate_one(
    engine: Engine,
    db: Database,
    seller: SellerRecord,
    *,
    audit: Audit | None,
    on_change: Callable[[TierChange], object] | None = None,
    on_event: Callable[[Event], object] | None = None,
) -> dict[str, object]:
    """Apply what the tier decision says to one seller; return what happened.

    ``on_change`` gets a tier change made; ``on_event`` the start or the end of a
    downgrade's grace period (which changes what the seller's tier view says).
    """
    context, overrides = evaluation_input(engine, db, seller)
    decision = engine.qualify(context, overrides=overrides)
    changed = None
    if decision.action is Action.UPGRADE or decision.action is Action.DOWNGRADE:
        changed = db.apply_tier_change(
            seller.seller_id,
            decision.effective_tier,
            reason=f"{decision.action.value}: {decision.message}",
            policy_version=engine.version,
            audit=audit,
        )
        if changed is not None and on_change is not None:
            on_change(changed)
    elif decision.action is Action.DOWNGRADE_PENDING:
        if seller.below_since is None:
            marked = db.mark_below(seller.seller_id)
            if on_event is not None and marked.below_since is not None:
                on_event(
                    downgrade_pending(
                        seller.seller_id,
                        tier=seller.tier,
                        since=marked.below_since,
                        # Counted from now, the start just stored (to the store's clock).
                        effective_at=decision.downgrade_effective_at,
                    )
                )
    elif seller.below_since is not None:
        db.clear_below(seller.seller_id)
        if on_event is not None:
            on_event(downgrade_cancelled(seller.seller_id, tier=seller.tier))
    return {
        "seller_id": seller.seller_id,
        "from_tier": seller.tier,
        "to_tier": decision.effective_tier if changed is not None else seller.tier,
        "action": decision.action.value,
        "changed": changed is not None,
        "downgrade_effective_at": iso_or_none(decision.downgrade_effective_at),
    }


def router() -> APIRouter:
    """The seller routes, under the service prefix."""
    from ._app import PREFIX  # noqa: PLC0415  _app imports this module

    api = APIRouter(prefix=PREFIX, tags=["sellers"], responses=PROBLEM_RESPONSES)

    @api.put(
        "/sellers/{seller_id}",
        summary="Create or replace a seller (admin)",
        response_model=None,
        responses={
            **success(SELLER, "The seller as stored."),
            **semantic_refusal(
                "the tier is not one of the active policy set's tiers, or an attribute is not declared "
                "in its context or has a value of another type"
            ),
        },
    )
    def put_seller(
        request: Request, seller_id: SellerId, body: SellerIn, principal: Annotated[Principal, Admin]
    ) -> Response:
        engine = _engine(request)
        if body.tier not in engine.tiers:
            raise ServiceError(
                "VALIDATION_FAILED",
                f"unknown tier {body.tier!r}; tiers: {', '.join(engine.tiers)}",
                status=422,
            )
        _check_attributes(engine, body.attributes)
        db = _db(request)
        try:
            previous: str | None = db.get_seller(seller_id).tier  # for the events only
        except NotFoundError:
            previous = None
        seller = db.upsert_seller(
            seller_id, tier=body.tier, attributes=body.attributes, audit=audit_of(request, principal)
        )
        events = [seller_updated(seller_id, tier=seller.tier, previous_tier=previous)]
        if previous is not None and previous != seller.tier:
            events.append(
                tier_changed(
                    seller_id,
                    from_tier=previous,
                    to_tier=seller.tier,
                    reason="tier set directly",  # what the store writes in the tier history
                    at=seller.tier_since,
                )
            )
        announce(request.app, *events)
        return envelope(request, _seller_json(seller))

    @api.get(
        "/sellers/{seller_id}",
        summary="A seller as stored",
        response_model=None,
        responses=success(SELLER, "The seller as stored."),
    )
    def get_seller(
        request: Request, seller_id: SellerId, principal: Annotated[Principal, Reader]
    ) -> Response:
        seller_access(principal, seller_id)
        return envelope(request, _seller_json(_seller(_db(request), seller_id)))

    @api.get(
        "/sellers/{seller_id}/entitlements",
        summary="Every feature and limit of a seller",
        response_model=None,
        responses=success(ENTITLEMENTS, "Every feature and limit, in policy order, each with its decision."),
    )
    def entitlements(
        request: Request, seller_id: SellerId, principal: Annotated[Principal, Reader]
    ) -> Response:
        seller_access(principal, seller_id)
        db, engine = _db(request), _engine(request)
        cache: SellerCache = request.app.state.cache
        cached = cache.entitlements(seller_id, engine.version)
        if cached is not None:
            return envelope(request, cached)
        ticket = cache.ticket()
        context, overrides = evaluation_input(engine, db, _seller(db, seller_id))
        answer = engine.entitlements(context, overrides=overrides).to_json()
        # An entry never outlives the next start or expiry of one of the seller's overrides.
        max_age = seconds_until_change(m for o in overrides for m in (o.starts_at, o.expires_at))
        cache.put_entitlements(seller_id, engine.version, answer, ticket=ticket, max_age=max_age)
        return envelope(request, answer)

    @api.get(
        "/sellers/{seller_id}/tier",
        summary="A seller's tier, what it qualifies for, and progress to the next",
        response_model=None,
        responses=success(TIER, "The seller, its tier decision and its latest tier changes, newest first."),
    )
    def tier(
        request: Request,
        seller_id: SellerId,
        principal: Annotated[Principal, Reader],
        history: Annotated[int, Query(ge=0, le=100)] = 10,
    ) -> Response:
        seller_access(principal, seller_id)
        db, engine = _db(request), _engine(request)
        seller = _seller(db, seller_id)
        context, overrides = evaluation_input(engine, db, seller)
        decision = engine.qualify(context, overrides=overrides)
        changes = db.tier_history(seller_id, limit=history) if history else []
        return envelope(
            request,
            {
                **_seller_json(seller),
                "qualification": decision.to_json(),
                "history": [
                    {
                        "from_tier": c.from_tier,
                        "to_tier": c.to_tier,
                        "reason": c.reason,
                        "at": iso_or_none(c.at),
                        "policy_version": c.policy_version,
                    }
                    for c in changes
                ],
            },
        )

    @api.post(
        "/sellers/{seller_id}/metrics",
        status_code=201,
        summary="Record a metrics snapshot (service, admin)",
        response_model=None,
        responses={
            **success(METRICS_RECORDED, "The snapshot stored.", 201),
            **semantic_refusal(
                "a metric is not one the policies' context declares, or the store refuses a value"
            ),
        },
    )
    def post_metrics(
        request: Request, seller_id: SellerId, body: MetricsIn, principal: Annotated[Principal, Writer]
    ) -> Response:
        db = _db(request)
        _seller(db, seller_id)
        _check_metric_names(_engine(request), body.metrics)
        previous = db.latest_metrics(seller_id)
        try:
            snapshot = db.record_metrics(seller_id, body.metrics, taken_at=body.taken_at)
        except ValueError as exc:
            raise ServiceError("VALIDATION_FAILED", str(exc), status=422) from None
        # Every admin change is audited (docs/auth.md), and the store's record_metrics takes
        # no audit: the ingestion is written to the audit log here, whoever made it.
        audit = audit_of(request, principal)
        db.append_audit(
            actor=audit.actor,
            action="metrics.record",
            target=f"seller:{seller_id}",
            before=None
            if previous is None
            else {"taken_at": iso_or_none(previous.taken_at), "metrics": dict(previous.metrics)},
            after={"taken_at": iso_or_none(snapshot.taken_at), "metrics": dict(snapshot.metrics)},
            request_id=audit.request_id,
        )
        announce(request.app, metrics_recorded(seller_id, taken_at=snapshot.taken_at))
        return envelope(
            request,
            {
                "seller_id": seller_id,
                "taken_at": iso_or_none(snapshot.taken_at),
                "metrics": dict(snapshot.metrics),
            },
            status=201,
        )

    @api.post(
        "/tiers/reevaluate",
        summary="Re-evaluate the tiers of some or all sellers (service, admin)",
        response_model=None,
        responses=success(REEVALUATION, "What happened to each seller, and how many changed tier."),
    )
    def reevaluate(
        request: Request,
        principal: Annotated[Principal, Writer],
        body: Annotated[ReevaluateIn | None, Body()] = None,
    ) -> Response:
        db, engine = _db(request), _engine(request)
        audit = audit_of(request, principal)
        wanted = body.seller_ids if body is not None else None
        results = []
        changes: list[TierChange] = []
        events: list[Event] = []
        if wanted is None:
            after = None
            while page := db.list_sellers(after=after, limit=500):
                results += [
                    reevaluate_one(
                        engine, db, seller, audit=audit, on_change=changes.append, on_event=events.append
                    )
                    for seller in page
                ]
                after = page[-1].seller_id
        else:
            found = db.get_sellers(wanted)
            missing = [s for s in wanted if s not in found]
            if missing:
                raise ServiceError(
                    "SELLER_NOT_FOUND", f"no seller {missing[0]!r}", status=404, extra={"missing": missing}
                )
            results = [
                reevaluate_one(
                    engine, db, found[s], audit=audit, on_change=changes.append, on_event=events.append
                )
                for s in dict.fromkeys(wanted)
            ]
        announce(request.app, *(tier_change(change) for change in changes), *events)
        return envelope(request, {"results": results, "changed": sum(1 for r in results if r["changed"])})

    @api.get(
        "/sellers/{seller_id}/overrides",
        summary="A seller's active and scheduled overrides",
        response_model=None,
        responses=success(OVERRIDES, "The overrides not yet expired."),
    )
    def list_overrides(
        request: Request, seller_id: SellerId, principal: Annotated[Principal, Reader]
    ) -> Response:
        seller_access(principal, seller_id)
        db = _db(request)
        _seller(db, seller_id)
        return envelope(request, [_override_json(o) for o in db.list_overrides(seller_id=seller_id)])

    @api.post(
        "/sellers/{seller_id}/overrides",
        status_code=201,
        summary="Grant an override (admin)",
        response_model=None,
        responses=success(OVERRIDE, "The override stored.", 201)
        | semantic_refusal(
            "the active policy set refuses the override (an unknown target, a value that does not fit it) "
            "or it would expire before it starts or before now"
        ),
    )
    def create_override(
        request: Request, seller_id: SellerId, body: OverrideIn, principal: Annotated[Principal, Admin]
    ) -> Response:
        db = _db(request)
        _seller(db, seller_id)
        _check_override_target(_engine(request), body)
        try:
            record = db.create_override(
                seller_id,
                kind=body.kind,  # type: ignore[arg-type]  # checked by the pattern
                target=body.target,
                value=body.value,
                reason=body.reason,
                author=principal.subject,
                expires_at=body.expires_at,
                starts_at=body.starts_at,
                audit=audit_of(request, principal),
            )
        except ValueError as exc:
            raise ServiceError("VALIDATION_FAILED", str(exc), status=422) from None
        except ConflictError as exc:
            raise ServiceError("CONFLICT", str(exc), status=409) from None
        announce(request.app, override_event("created", record))
        return envelope(request, _override_json(record), status=201)

    @api.delete(
        "/sellers/{seller_id}/overrides/{override_id}",
        summary="Revoke an override (admin)",
        response_model=None,
        responses=success(OVERRIDE, "The override revoked."),
    )
    def delete_override(
        request: Request,
        seller_id: SellerId,
        override_id: Annotated[int, Path(ge=1, le=2**63 - 1)],  # a database integer
        principal: Annotated[Principal, Admin],
    ) -> Response:
        db = _db(request)
        try:
            record = db.get_override(override_id)
            if record.seller_id != seller_id:
                raise NotFoundError("no such override")  # noqa: TRY301  one not-found answer for both cases
            record = db.delete_override(override_id, audit=audit_of(request, principal))
        except NotFoundError:
            raise ServiceError(
                "NOT_FOUND", f"seller {seller_id!r} has no override {override_id}", status=404
            ) from None
        announce(request.app, override_event("deleted", record))
        return envelope(request, _override_json(record))

    return api
