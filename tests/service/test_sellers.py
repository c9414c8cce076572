"""The store-backed seller routes: sellers, entitlements, tiers, metrics, re-evaluation and overrides."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import tierpolicy
from servicesupport import app_for, auth, calls
from tierpolicy.service import PREFIX

if TYPE_CHECKING:
    from tierpolicy.service._events import Event

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime.now(dt.UTC)
ATTRIBUTES = {
    "verified": True,
    "country": "DE",
    "joined_at": "2024-03-14T09:30:00Z",
    "categories": ["home", "garden"],
    "kyc_level": 2,
    "business_type": "business",
}
GOLD_METRICS = {
    "orders_60d": 412,
    "revenue_60d": 38750.0,
    "rating": 4.85,
    "ratings_count": 1290,
    "claim_rate": 0.004,
    "late_shipment_rate": 0.021,
    "cancellation_rate": 0.006,
}
POOR_METRICS = {**GOLD_METRICS, "orders_60d": 3, "revenue_60d": 90.0, "rating": 3.1}
ADMIN, SERVICE = auth("admin", "ana"), auth("service", "tier-job")


def seller_auth(seller_id: str) -> dict[str, str]:
    """A seller token for ``seller_id``."""
    return auth("seller", f"user-of-{seller_id}", seller_id)


@pytest.fixture(scope="module")
def policy_set() -> tierpolicy.PolicySet:
    """The shipped marketplace policies."""
    return tierpolicy.load(ROOT / "policies").policy_set


def service(policy_set: tierpolicy.PolicySet, when: dt.datetime = NOW):
    """The service over the marketplace policies, its engine's clock at ``when``."""
    return app_for(tierpolicy.Engine(policy_set, clock=lambda: when))


def put(seller_id: str, tier: str = "bronze") -> tuple[str, str, dict[str, object]]:
    """The request that creates a seller."""
    return (
        "PUT",
        f"{PREFIX}/sellers/{seller_id}",
        {"json": {"tier": tier, "attributes": ATTRIBUTES}, "headers": ADMIN},
    )


def metrics(seller_id: str, values: dict[str, float]) -> tuple[str, str, dict[str, object]]:
    """The request that records a metrics snapshot."""
    return (
        "POST",
        f"{PREFIX}/sellers/{seller_id}/metrics",
        {"json": {"metrics": values}, "headers": SERVICE},
    )


REEVALUATE = ("POST", f"{PREFIX}/tiers/reevaluate", {"json": {}, "headers": SERVICE})


def test_a_seller_is_created_by_an_admin_and_read_by_itself(policy_set):
    """Admins create sellers; a seller reads its own record; a service reads any."""
    created, own, by_service, refused = calls(
        service(policy_set),
        put("s-1"),
        ("GET", f"{PREFIX}/sellers/s-1", {"headers": seller_auth("s-1")}),
        ("GET", f"{PREFIX}/sellers/s-1", {"headers": SERVICE}),
        ("PUT", f"{PREFIX}/sellers/s-2", {"json": {"tier": "bronze"}, "headers": SERVICE}),
    )
    assert created.status_code == 200
    assert created.json()["data"]["tier"] == "bronze"
    assert own.json()["data"]["attributes"] == ATTRIBUTES
    assert by_service.status_code == 200
    assert (refused.status_code, refused.json()["code"]) == (403, "FORBIDDEN")


def test_another_sellers_id_looks_exactly_like_a_missing_seller(policy_set):
    """A seller asking for another seller gets the same 404 as for a seller that does not exist."""
    _, other, missing = calls(
        service(policy_set),
        put("s-1"),
        ("GET", f"{PREFIX}/sellers/s-1", {"headers": seller_auth("s-9")}),
        ("GET", f"{PREFIX}/sellers/nobody", {"headers": SERVICE}),
    )
    assert other.status_code == missing.status_code == 404
    strip = lambda p: {k: v for k, v in p.items() if k not in ("instance", "request_id")}  # noqa: E731  a local helper
    assert strip(other.json()) == strip(missing.json())
    assert other.json()["code"] == "SELLER_NOT_FOUND"


def test_an_unknown_tier_or_bad_body_is_a_validation_problem(policy_set):
    """Creating a seller in a tier the policies lack, or with unknown members, is 422."""
    unknown, extra = calls(
        service(policy_set),
        ("PUT", f"{PREFIX}/sellers/s-1", {"json": {"tier": "diamond"}, "headers": ADMIN}),
        ("PUT", f"{PREFIX}/sellers/s-1", {"json": {"tier": "gold", "colour": "red"}, "headers": ADMIN}),
    )
    assert (unknown.status_code, unknown.json()["code"]) == (422, "VALIDATION_FAILED")
    assert "diamond" in unknown.json()["detail"]
    assert (extra.status_code, extra.json()["code"]) == (422, "VALIDATION_FAILED")


@pytest.mark.parametrize(
    ("attributes", "detail", "location"),
    [
        (
            {"verifed": True},
            "unknown seller attribute 'verifed'; did you mean 'verified'?",
            "body/attributes/verifed",
        ),
        (
            {"kyc_level": "2"},
            "seller.kyc_level: expected a whole number, found '2' (text)",
            "body/attributes/kyc_level",
        ),
        (
            {"verified": 1},
            "seller.verified: expected true or false, found 1 (a number)",
            "body/attributes/verified",
        ),
        (
            {"categories": ["home", 3]},
            "seller.categories[1]: expected text, found 3 (a number)",
            "body/attributes/categories",
        ),
        (
            {"joined_at": "last spring"},
            "seller.joined_at: expected an RFC 3339 timestamp such as 2026-01-31T12:00:00Z, found 'last spring'",
            "body/attributes/joined_at",
        ),
        (
            {"tier": "gold"},
            "'tier' is not an attribute: send the tier as 'tier'",
            "body/attributes/tier",
        ),
        (
            {"below_since": "2026-01-01T00:00:00Z"},
            "'below_since' is not an attribute: the store keeps 'below_since' itself",
            "body/attributes/below_since",
        ),
    ],
)
def test_attributes_must_be_declared_and_of_their_type(policy_set, attributes, detail, location):
    """A seller attribute the context does not declare, or of another type, is 422 naming it; nothing is stored."""
    refused, read = calls(
        service(policy_set),
        (
            "PUT",
            f"{PREFIX}/sellers/s-9",
            {"json": {"tier": "gold", "attributes": attributes}, "headers": ADMIN},
        ),
        ("GET", f"{PREFIX}/sellers/s-9", {"headers": ADMIN}),
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "VALIDATION_FAILED")
    assert refused.json()["detail"] == detail
    assert [e["location"] for e in refused.json()["errors"]] == [location]
    assert read.status_code == 404


def test_declared_attributes_of_their_type_are_stored(policy_set):
    """Every declared attribute with a value of its type (a whole number for a double too) is accepted as sent."""
    attributes = {
        "verified": True,
        "country": "DE",
        "joined_at": "2024-03-14T09:30:00+01:00",
        "categories": ["home"],
        "kyc_level": 2,
        "business_type": "business",
    }
    [stored] = calls(
        service(policy_set),
        (
            "PUT",
            f"{PREFIX}/sellers/s-8",
            {"json": {"tier": "gold", "attributes": attributes}, "headers": ADMIN},
        ),
    )
    assert stored.status_code == 200
    assert stored.json()["data"]["attributes"] == attributes


def test_entitlements_and_tier_come_from_the_stored_seller_and_metrics(policy_set):
    """Entitlements and the tier view read the stored attributes and the latest metrics snapshot."""
    _, recorded, entitlements, tier = calls(
        service(policy_set),
        put("s-1", "gold"),
        metrics("s-1", GOLD_METRICS),
        ("GET", f"{PREFIX}/sellers/s-1/entitlements", {"headers": seller_auth("s-1")}),
        ("GET", f"{PREFIX}/sellers/s-1/tier", {"headers": seller_auth("s-1")}),
    )
    assert recorded.status_code == 201
    data = entitlements.json()["data"]
    assert data["tier"] == "gold"
    assert data["features"]["listing.promoted"]["allowed"] is True
    view = tier.json()["data"]
    assert (view["tier"], view["qualification"]["action"], view["qualification"]["next_tier"]) == (
        "gold",
        "keep",
        "platinum",
    )
    assert [(h["from_tier"], h["to_tier"], h["reason"]) for h in view["history"]] == [
        (None, "gold", "seller registered")
    ]


def test_reevaluation_upgrades_at_once_and_is_idempotent(policy_set):
    """A bronze seller with gold metrics is upgraded, with history; running it again changes nothing."""
    app = service(policy_set)
    *_, first, second, tier = calls(
        app,
        put("s-1"),
        metrics("s-1", GOLD_METRICS),
        REEVALUATE,
        REEVALUATE,
        ("GET", f"{PREFIX}/sellers/s-1/tier", {"headers": SERVICE}),
    )
    [result] = first.json()["data"]["results"]
    assert (result["from_tier"], result["to_tier"], result["action"], result["changed"]) == (
        "bronze",
        "gold",
        "upgrade",
        True,
    )
    assert second.json()["data"]["changed"] == 0
    view = tier.json()["data"]
    assert view["tier"] == "gold"
    assert [(h["from_tier"], h["to_tier"]) for h in view["history"]] == [("bronze", "gold"), (None, "bronze")]
    assert view["history"][0]["policy_version"] == policy_set.version


def test_a_downgrade_waits_for_its_grace_period(policy_set):
    """Poor metrics start a grace period; the downgrade happens only once it has passed."""
    app = service(policy_set)
    _, _, pending, again = calls(
        app, put("s-1", "gold"), metrics("s-1", POOR_METRICS), REEVALUATE, REEVALUATE
    )
    assert pending.json()["data"]["results"][0]["action"] == "downgrade_pending"
    assert pending.json()["data"]["changed"] == again.json()["data"]["changed"] == 0
    later = service(policy_set, NOW + dt.timedelta(days=91))
    later.state.database = app.state.database  # the same store, 91 days on
    [due] = calls(later, REEVALUATE)
    [result] = due.json()["data"]["results"]
    assert (result["action"], result["changed"], result["from_tier"]) == ("downgrade", True, "gold")
    assert result["to_tier"] != "gold"


def test_the_grace_period_starting_and_ending_is_announced_once(policy_set):
    """A re-evaluation that starts a downgrade's grace period announces it (once), and recovering metrics end it."""
    app = service(policy_set)
    heard: list[Event] = []
    app.state.events.add_listener(heard.append)
    calls(app, put("s-1", "gold"), metrics("s-1", POOR_METRICS), REEVALUATE, REEVALUATE)
    pending = [e for e in heard if e.type.startswith("tier.downgrade")]
    assert [e.type for e in pending] == ["tier.downgrade_pending"]
    [event] = pending
    assert event.seller_id == "s-1"
    assert event.data["tier"] == "gold"
    assert event.data["effective_at"] > event.data["since"]
    heard.clear()
    calls(app, metrics("s-1", GOLD_METRICS), REEVALUATE, REEVALUATE)
    ended = [e.type for e in heard if e.type.startswith("tier.downgrade")]
    assert ended == ["tier.downgrade_cancelled"]


def test_reevaluating_named_sellers_reports_the_missing_ones(policy_set):
    """Naming sellers re-evaluates only those; an unknown one is a 404 that lists it."""
    _, some, missing = calls(
        service(policy_set),
        put("s-1"),
        ("POST", f"{PREFIX}/tiers/reevaluate", {"json": {"seller_ids": ["s-1", "s-1"]}, "headers": SERVICE}),
        (
            "POST",
            f"{PREFIX}/tiers/reevaluate",
            {"json": {"seller_ids": ["s-1", "ghost"]}, "headers": SERVICE},
        ),
    )
    assert [r["seller_id"] for r in some.json()["data"]["results"]] == ["s-1"]
    assert (missing.status_code, missing.json()["missing"]) == (404, ["ghost"])


def test_overrides_are_granted_listed_applied_and_revoked_by_admins(policy_set):
    """An admin override applies to entitlements until revoked; sellers may read but not grant."""
    expires = (NOW + dt.timedelta(days=7)).isoformat()
    grant = {
        "kind": "feature",
        "target": "support.dedicated_manager",
        "value": True,
        "reason": "pilot",
        "expires_at": expires,
    }
    app = service(policy_set)
    _, created, listed, seller_try, entitled = calls(
        app,
        put("s-1", "gold"),
        ("POST", f"{PREFIX}/sellers/s-1/overrides", {"json": grant, "headers": ADMIN}),
        ("GET", f"{PREFIX}/sellers/s-1/overrides", {"headers": seller_auth("s-1")}),
        ("POST", f"{PREFIX}/sellers/s-1/overrides", {"json": grant, "headers": seller_auth("s-1")}),
        ("GET", f"{PREFIX}/sellers/s-1/entitlements", {"headers": SERVICE}),
    )
    assert created.status_code == 201
    override = created.json()["data"]
    assert (override["author"], override["target"]) == ("ana", "support.dedicated_manager")
    assert [o["id"] for o in listed.json()["data"]] == [override["id"]]
    assert seller_try.status_code == 403
    instant = entitled.json()["data"]["features"]["support.dedicated_manager"]
    assert (instant["allowed"], instant["reason"]) == (True, "OVERRIDE")
    revoked, again, wrong_seller = calls(
        app,
        ("DELETE", f"{PREFIX}/sellers/s-1/overrides/{override['id']}", {"headers": ADMIN}),
        ("DELETE", f"{PREFIX}/sellers/s-1/overrides/{override['id']}", {"headers": ADMIN}),
        ("DELETE", f"{PREFIX}/sellers/s-2/overrides/{override['id']}", {"headers": ADMIN}),
    )
    assert revoked.status_code == 200
    assert again.status_code == wrong_seller.status_code == 404
    audit = app.state.database.list_audit()
    assert {e.action for e in audit} >= {"override.create", "override.delete", "seller.upsert"}
    assert all(e.actor == "ana" for e in audit)


def test_a_malformed_override_is_refused_with_the_engines_reason(policy_set):
    """An override the engine would refuse (a count for a feature, an expiry in the past) is 422."""
    past = (NOW - dt.timedelta(days=1)).isoformat()
    _, count, expired = calls(
        service(policy_set),
        put("s-1"),
        (
            "POST",
            f"{PREFIX}/sellers/s-1/overrides",
            {
                "json": {
                    "kind": "feature",
                    "target": "support.dedicated_manager",
                    "value": 3,
                    "reason": "r",
                    "expires_at": (NOW + dt.timedelta(days=1)).isoformat(),
                },
                "headers": ADMIN,
            },
        ),
        (
            "POST",
            f"{PREFIX}/sellers/s-1/overrides",
            {"json": {"kind": "tier", "target": "gold", "reason": "r", "expires_at": past}, "headers": ADMIN},
        ),
    )
    assert (count.status_code, count.json()["code"]) == (422, "VALIDATION_FAILED")
    assert (expired.status_code, "not after now" in expired.json()["detail"]) == (422, True)


@pytest.mark.parametrize(
    ("kind", "target", "value", "detail"),
    [
        ("feature", "support.dedicated_manger", True, "did you mean 'support.dedicated_manager'?"),
        ("limit", "no_such_limit", 5, "limits: "),
        ("tier", "glod", None, "did you mean 'gold'?"),
    ],
)
def test_an_override_of_a_name_the_policies_do_not_define_is_refused(policy_set, kind, target, value, detail):
    """Overrides are checked as `tierpolicy check` checks them: an unknown feature, limit or tier is 422, nothing stored."""
    grant = {
        "kind": kind,
        "target": target,
        "value": value,
        "reason": "r",
        "expires_at": (NOW + dt.timedelta(days=1)).isoformat(),
    }
    app = service(policy_set)
    _, refused, listed = calls(
        app,
        put("s-1"),
        ("POST", f"{PREFIX}/sellers/s-1/overrides", {"json": grant, "headers": ADMIN}),
        ("GET", f"{PREFIX}/sellers/s-1/overrides", {"headers": ADMIN}),
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "VALIDATION_FAILED")
    assert f"unknown {kind} {target!r}" in refused.json()["detail"]
    assert detail in refused.json()["detail"]
    assert refused.json()["errors"] == [{"location": "body/target", "message": f"unknown {kind}"}]
    assert listed.json()["data"] == []


def test_metrics_need_a_writer_and_a_known_seller(policy_set):
    """Sellers cannot post metrics; metrics for an unknown seller are 404."""
    mine, unknown = calls(
        service(policy_set),
        (
            "POST",
            f"{PREFIX}/sellers/s-1/metrics",
            {"json": {"metrics": {"rating": 5}}, "headers": seller_auth("s-1")},
        ),
        metrics("ghost", {"rating": 5}),
    )
    assert mine.status_code == 403
    assert unknown.status_code == 404


def test_a_misspelt_metric_is_refused_with_a_suggestion(policy_set):
    """Metric names the policies' context does not declare are a 422 naming them, with a did-you-mean."""
    _, typo = calls(service(policy_set), put("s-1"), metrics("s-1", {"ordrs_60d": 5, "rating": 4.0}))
    assert (typo.status_code, typo.json()["code"]) == (422, "VALIDATION_FAILED")
    assert "did you mean 'orders_60d'?" in typo.json()["detail"]
    assert [e["location"] for e in typo.json()["errors"]] == ["body/metrics/ordrs_60d"]


def test_every_method_of_a_path_is_in_allow_and_huge_ids_are_refused(policy_set):
    """A 405 names every method the path takes (GET and PUT on a seller); an id beyond 64 bits is 422, not 500."""
    wrong, huge = calls(
        service(policy_set),
        ("DELETE", f"{PREFIX}/sellers/s-1", {"headers": ADMIN}),
        ("DELETE", f"{PREFIX}/sellers/s-1/overrides/{10**30}", {"headers": ADMIN}),
    )
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, PUT"
    assert (huge.status_code, huge.json()["code"]) == (422, "VALIDATION_FAILED")
