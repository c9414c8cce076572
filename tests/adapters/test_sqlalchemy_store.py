"""The SQL store against real SQLite files and a real PostgreSQL: every repository method."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import runpy
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql

import tierpolicy
from pgserver import closed_port
from support import NOW
from tierpolicy import Action, StoreError, StoreUnavailableError
from tierpolicy.adapters.sqlalchemy import (
    MAX_PAGE,
    Audit,
    ConflictError,
    Database,
    NotFoundError,
    OverrideRecord,
    PolicyVersionRecord,
    PolicyVersionSummary,
    upgrade,
)
from tierpolicy.adapters.sqlalchemy._errors import redact, translate
from tierpolicy.adapters.sqlalchemy._models import UTCDateTime
from tierpolicy.adapters.sqlalchemy._store import as_json

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parents[2]
DAY = dt.timedelta(days=1)
V1, V2, V3 = "1" * 16, "2" * 16, "3" * 16
LEAKED = "p4ss"  # what a driver message must never show


class Clock:
    """A clock that moves only when told to, starting at support.NOW."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        """The current fake time."""
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        """Move the clock (backwards too, to play a replica whose clock is behind)."""
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    """The store's clock."""
    return Clock()


@pytest.fixture
def db(database_url: str, clock: Clock) -> Iterator[Database]:
    """A migrated store of this test's own, on each backend, with the fake clock."""
    upgrade(database_url)
    with Database.from_url(database_url, now=clock) as database:
        yield database


def add_version(db: Database, version: str, **kwargs: object) -> PolicyVersionRecord:
    """Store a bundle whose digest starts with ``version``."""
    return db.add_policy_version(
        version=version,
        digest=version + "0" * 48,
        files={"tiers.yaml": f"# {version}\n"},
        author="ana",
        **kwargs,  # type: ignore[arg-type]
    )


def run_together(*calls: Callable[[], object]) -> list[object]:
    """Run the calls in threads released at the same moment; return results or exceptions."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int, call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001  returned to the test, which asserts on it
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# --------------------------------------------------------------------------- sellers


def test_upsert_creates_a_seller_with_its_first_history_entry(db, clock):
    """A new seller is stored with its tier since now, and its first tier is in the history from None."""
    seller = db.upsert_seller("s-1", tier="bronze", attributes={"verified": True, "tags": ("a", "b")})
    assert seller.tier == "bronze"
    assert seller.tier_since == seller.created_at == seller.updated_at == clock.now
    assert seller.below_since is None
    assert seller.attributes == {"verified": True, "tags": ["a", "b"]}
    assert db.get_seller("s-1") == seller
    [entry] = db.tier_history("s-1")
    assert (entry.from_tier, entry.to_tier, entry.reason, entry.at) == (
        None,
        "bronze",
        "seller registered",
        NOW,
    )


def test_upsert_changes_attributes_and_tier_with_history(db, clock):
    """Upserting an existing seller replaces its attributes and records a changed tier in the history."""
    db.upsert_seller("s-1", tier="bronze", attributes={"verified": False, "region": "eu"})
    clock.advance(DAY)
    seller = db.upsert_seller(
        "s-1", tier="silver", attributes={"verified": True}, reason="manual promotion", policy_version=V1
    )
    assert seller.attributes == {"verified": True}
    assert (seller.tier, seller.tier_since, seller.updated_at) == ("silver", NOW + DAY, NOW + DAY)
    assert seller.created_at == NOW
    latest = db.tier_history("s-1")[0]
    assert (latest.from_tier, latest.to_tier, latest.reason, latest.policy_version) == (
        "bronze",
        "silver",
        "manual promotion",
        V1,
    )
    clock.advance(DAY)
    assert db.upsert_seller("s-1", tier="gold").tier_since == NOW + 2 * DAY
    assert db.tier_history("s-1")[0].reason == "tier set directly"


def test_upsert_without_changes_writes_nothing(db, clock):
    """Upserting the stored tier and attributes (or no attributes) changes no row and audits nothing."""
    first = db.upsert_seller("s-1", tier="bronze", attributes={"a": 1})
    clock.advance(DAY)
    assert db.upsert_seller("s-1", tier="bronze", attributes={"a": 1}, audit=Audit(actor="ana")) == first
    assert db.upsert_seller("s-1", tier="bronze", audit=Audit(actor="ana")) == first
    assert len(db.tier_history("s-1")) == 1
    assert db.list_audit() == []


def test_upsert_keeps_attributes_when_none_are_given(db):
    """Attributes of None keep the stored ones; a new seller without attributes gets an empty object."""
    assert db.upsert_seller("s-1", tier="bronze").attributes == {}
    db.upsert_seller("s-1", tier="bronze", attributes={"verified": True})
    assert db.upsert_seller("s-1", tier="silver").attributes == {"verified": True}


def test_concurrent_upserts_of_a_new_seller_both_succeed(db):
    """Two callers registering the same new seller at once: one creates it, the other finds it; one history entry."""
    results = run_together(
        lambda: db.upsert_seller("s-1", tier="bronze"), lambda: db.upsert_seller("s-1", tier="bronze")
    )
    assert all(not isinstance(result, BaseException) for result in results), results
    assert len(db.tier_history("s-1")) == 1


def test_get_seller_of_an_unknown_id_is_not_found(db):
    """An unknown seller raises NotFoundError, which is also a LookupError and a StoreError."""
    with pytest.raises(NotFoundError, match="no seller 'nobody'") as caught:
        db.get_seller("nobody")
    assert isinstance(caught.value, LookupError)
    assert isinstance(caught.value, StoreError)


def test_get_sellers_returns_the_known_ones_across_chunks(db):
    """get_sellers looks up any number of ids (more than one IN list holds) and leaves unknown ones out."""
    for i in range(3):
        db.upsert_seller(f"s-{i}", tier="bronze")
    ids = [f"s-{i}" for i in range(1200)]
    found = db.get_sellers(ids)
    assert sorted(found) == ["s-0", "s-1", "s-2"]
    assert found["s-1"].seller_id == "s-1"
    assert db.get_sellers([]) == {}


def test_list_sellers_pages_by_key(db):
    """Sellers come in id order, ``limit`` at a time, each page after the last id of the previous one."""
    for sid in ("c", "a", "e", "b", "d"):
        db.upsert_seller(sid, tier="bronze")
    first = db.list_sellers(limit=2)
    assert [s.seller_id for s in first] == ["a", "b"]
    second = db.list_sellers(after=first[-1].seller_id, limit=2)
    assert [s.seller_id for s in second] == ["c", "d"]
    assert [s.seller_id for s in db.list_sellers(after="d", limit=2)] == ["e"]
    assert db.list_sellers(after="e") == []


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (MAX_PAGE + 1, 0), (10, -1)])
def test_pages_outside_the_bounds_are_refused(db, limit, offset):
    """A limit outside 1..MAX_PAGE or a negative offset is a ValueError, on every listing."""
    with pytest.raises(ValueError, match=r"limit|offset"):
        db.list_audit(limit=limit, offset=offset)
    with pytest.raises(ValueError, match=r"limit|offset"):
        db.list_policy_versions(limit=limit, offset=offset)
    if offset == 0:
        with pytest.raises(ValueError, match="limit"):
            db.list_sellers(limit=limit)


def test_mark_below_starts_the_grace_period_once_and_clear_below_ends_it(db, clock):
    """mark_below keeps the first start however often it is called; clear_below resets it."""
    db.upsert_seller("s-1", tier="gold")
    assert db.mark_below("s-1").below_since == NOW
    clock.advance(DAY)
    assert db.mark_below("s-1").below_since == NOW
    assert db.mark_below("s-1", since=NOW + 5 * DAY).below_since == NOW
    assert db.clear_below("s-1").below_since is None
    assert db.clear_below("s-1").below_since is None
    assert db.mark_below("s-1", since=NOW + 5 * DAY).below_since == NOW + 5 * DAY
    with pytest.raises(NotFoundError):
        db.mark_below("nobody")
    with pytest.raises(NotFoundError):
        db.clear_below("nobody")


# --------------------------------------------------------------------------- tiers


def test_apply_tier_change_updates_the_seller_and_writes_history(db, clock):
    """A tier change moves the seller, ends its grace period and writes one history entry, atomically."""
    db.upsert_seller("s-1", tier="gold")
    db.mark_below("s-1")
    clock.advance(DAY)
    change = db.apply_tier_change("s-1", "silver", reason="grace period over", policy_version=V1)
    assert change is not None
    assert (change.from_tier, change.to_tier, change.at, change.policy_version) == (
        "gold",
        "silver",
        NOW + DAY,
        V1,
    )
    seller = db.get_seller("s-1")
    assert (seller.tier, seller.tier_since, seller.below_since) == ("silver", NOW + DAY, None)
    assert db.tier_history("s-1")[0] == change


def test_apply_tier_change_is_idempotent(db):
    """Applying the tier the seller already has writes nothing and returns None."""
    db.upsert_seller("s-1", tier="bronze")
    assert db.apply_tier_change("s-1", "silver", reason="qualified") is not None
    assert db.apply_tier_change("s-1", "silver", reason="qualified", audit=Audit(actor="job")) is None
    assert [e.to_tier for e in db.tier_history("s-1")] == ["silver", "bronze"]
    assert db.list_audit() == []


def test_apply_tier_change_takes_an_explicit_time(db):
    """The change may take effect at a given time (the decision's), which becomes tier_since."""
    db.upsert_seller("s-1", tier="bronze")
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    change = db.apply_tier_change("s-1", "gold", reason="backfill", at=at)
    assert change is not None
    assert change.at == at
    assert change.at.tzinfo == dt.UTC
    assert db.get_seller("s-1").tier_since == at


def test_concurrent_identical_tier_changes_write_one_entry(db):
    """Two re-evaluations applying the same change at once record it once: the seller row is locked."""
    db.upsert_seller("s-1", tier="bronze")
    results = run_together(
        lambda: db.apply_tier_change("s-1", "silver", reason="a"),
        lambda: db.apply_tier_change("s-1", "silver", reason="b"),
    )
    assert sorted(result is None for result in results) == [False, True], results
    assert [e.to_tier for e in db.tier_history("s-1")] == ["silver", "bronze"]


def test_apply_tier_change_of_an_unknown_seller_is_not_found(db):
    """A tier change for a seller not in the store raises NotFoundError and writes nothing."""
    with pytest.raises(NotFoundError):
        db.apply_tier_change("nobody", "gold", reason="x")
    assert db.tier_history("nobody") == []


def test_tier_history_is_newest_first_and_limited(db, clock):
    """The history lists changes newest first, at most ``limit`` of them."""
    db.upsert_seller("s-1", tier="bronze")
    for tier in ("silver", "gold", "silver"):
        clock.advance(DAY)
        db.apply_tier_change("s-1", tier, reason=f"to {tier}")
    history = db.tier_history("s-1", limit=2)
    assert [(e.from_tier, e.to_tier) for e in history] == [("gold", "silver"), ("silver", "gold")]
    assert len(db.tier_history("s-1")) == 4


def reevaluate(db: Database, engine: tierpolicy.Engine, seller_id: str, now: dt.datetime) -> Action:
    """What the service's re-evaluation does for one seller, fed from the store."""
    seller = db.get_seller(seller_id)
    snapshot = db.latest_metrics(seller_id)
    assert snapshot is not None
    context = {
        "seller": {"id": seller.seller_id, "tier": seller.tier, **seller.attributes},
        "metrics": snapshot.metrics,
    }
    overrides = [o.to_override() for o in db.list_overrides(seller_id=seller_id, now=now)]
    decision = engine.qualify(context, now=now, below_since=seller.below_since, overrides=overrides)
    if decision.action in (Action.UPGRADE, Action.DOWNGRADE):
        db.apply_tier_change(
            seller_id,
            decision.effective_tier,
            reason=decision.message,
            policy_version=decision.policy_version,
            at=now,
        )
    elif decision.action == Action.DOWNGRADE_PENDING:
        db.mark_below(seller_id, since=now)
    else:
        db.clear_below(seller_id)
    return decision.action


def test_the_store_feeds_a_reevaluation_upgrades_now_and_downgrades_after_grace(db, engine):
    """Upgrades apply at once, downgrades after the grace period, and running twice changes nothing more."""
    db.upsert_seller("s-1", tier="bronze", attributes={"verified": True})
    db.record_metrics("s-1", {"orders": 150, "rating": 4.8, "claim_rate": 0.001}, taken_at=NOW)
    assert reevaluate(db, engine, "s-1", NOW) == Action.UPGRADE
    assert reevaluate(db, engine, "s-1", NOW) == Action.KEEP
    assert db.get_seller("s-1").tier == "gold"
    history = db.tier_history("s-1")
    assert [e.to_tier for e in history] == ["gold", "bronze"]
    assert history[0].policy_version == engine.version

    db.record_metrics("s-1", {"orders": 20, "rating": 4.1, "claim_rate": 0.001}, taken_at=NOW + DAY)
    assert reevaluate(db, engine, "s-1", NOW + DAY) == Action.DOWNGRADE_PENDING
    assert reevaluate(db, engine, "s-1", NOW + 2 * DAY) == Action.DOWNGRADE_PENDING
    assert db.get_seller("s-1").below_since == NOW + DAY
    assert reevaluate(db, engine, "s-1", NOW + 92 * DAY) == Action.DOWNGRADE
    assert reevaluate(db, engine, "s-1", NOW + 92 * DAY) == Action.KEEP
    seller = db.get_seller("s-1")
    assert (seller.tier, seller.below_since) == ("silver", None)
    assert [e.to_tier for e in db.tier_history("s-1")] == ["silver", "gold", "bronze"]


def test_the_usage_example_in_the_docs_runs(tmp_path, monkeypatch):
    """docs/store.md's usage example runs as written against the shipped policies and upgrades the seller."""
    [example, *_] = re.findall(
        r"```python\n(.*?)```", (ROOT / "docs" / "store.md").read_text(), flags=re.DOTALL
    )
    (tmp_path / "policies").symlink_to(ROOT / "policies")
    script = tmp_path / "example.py"
    script.write_text(example, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(os.fspath(script))
    assert namespace["decision"].action == Action.UPGRADE
    with Database.from_url("sqlite:///tierpolicy.db") as db:
        assert db.get_seller("s-1042").tier == "gold"
        assert [e.action for e in db.list_audit()] == ["policy.activate"]


# --------------------------------------------------------------------------- metrics


def test_record_metrics_and_read_the_latest(db, clock):
    """The latest snapshot is the one taken last, not the one stored last; ties go to the one stored last."""
    db.upsert_seller("s-1", tier="bronze")
    assert db.latest_metrics("s-1") is None
    first = db.record_metrics("s-1", {"orders": 1})
    assert (first.seller_id, first.taken_at, first.metrics) == ("s-1", NOW, {"orders": 1})
    db.record_metrics("s-1", {"orders": 0}, taken_at=NOW - DAY)
    assert db.latest_metrics("s-1") == first
    tie = db.record_metrics("s-1", {"orders": 2}, taken_at=NOW)
    assert db.latest_metrics("s-1") == tie
    clock.advance(DAY)
    assert db.record_metrics("s-1", {"orders": 3}).taken_at == NOW + DAY


def test_latest_metrics_for_many_sellers(db):
    """latest_metrics_for gives each seller's latest snapshot and leaves out sellers without one."""
    for sid in ("a", "b", "c"):
        db.upsert_seller(sid, tier="bronze")
    db.record_metrics("a", {"n": 1}, taken_at=NOW)
    db.record_metrics("a", {"n": 2}, taken_at=NOW + DAY)
    db.record_metrics("b", {"n": 3}, taken_at=NOW)
    latest = db.latest_metrics_for(["a", "b", "c", "unknown"])
    assert {sid: s.metrics for sid, s in latest.items()} == {"a": {"n": 2}, "b": {"n": 3}}


def test_record_metrics_of_an_unknown_seller_is_not_found(db):
    """Metrics for a seller not in the store raise NotFoundError."""
    with pytest.raises(NotFoundError):
        db.record_metrics("nobody", {"orders": 1})


@pytest.mark.parametrize(
    ("metrics", "error"),
    [
        ({"rating": float("nan")}, ValueError),
        ({"rating": float("inf")}, ValueError),
        ({"when": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}, TypeError),
        ({"bad": "\ud800"}, ValueError),
        ([("orders", 1)], TypeError),
    ],
)
def test_metrics_that_are_not_a_json_object_are_refused(db, metrics, error):
    """NaN, infinities, non-JSON values, lone surrogates and non-mappings are refused before the database."""
    db.upsert_seller("s-1", tier="bronze")
    with pytest.raises(error):
        db.record_metrics("s-1", metrics)
    assert db.latest_metrics("s-1") is None


# --------------------------------------------------------------------------- overrides


def test_create_get_list_and_delete_overrides(db):
    """An override round-trips with its value's JSON type, is listed, found by id and deleted once."""
    db.upsert_seller("s-1", tier="bronze")
    db.upsert_seller("s-2", tier="bronze")
    feature = db.create_override(
        "s-1",
        kind="feature",
        target="promoted",
        value=True,
        reason="pilot",
        author="ana",
        expires_at=NOW + DAY,
    )
    limit = db.create_override(
        "s-1", kind="limit", target="listings", value=0, reason="freeze", author="ana", expires_at=NOW + DAY
    )
    unlimited = db.create_override(
        "s-2", kind="limit", target="listings", value=None, reason="vip", author="bo", expires_at=NOW + DAY
    )
    tier = db.create_override(
        "s-2", kind="tier", target="gold", reason="partner", author="bo", expires_at=NOW + DAY
    )
    assert feature.value is True
    assert limit.value == 0
    assert limit.value is not False
    assert unlimited.value is None
    assert (tier.kind, tier.value, tier.expires_at) == ("tier", None, NOW + DAY)
    assert db.get_override(feature.id) == feature
    assert db.list_overrides() == [feature, limit, unlimited, tier]
    assert db.list_overrides(seller_id="s-2") == [unlimited, tier]
    assert db.delete_override(limit.id) == limit
    assert db.list_overrides(seller_id="s-1") == [feature]
    with pytest.raises(NotFoundError):
        db.delete_override(limit.id)
    with pytest.raises(NotFoundError):
        db.get_override(limit.id)


def test_override_expiry_follows_the_injected_clock(db, clock):
    """An override is listed until its expiry and not from then on, by the store's clock or an explicit now."""
    db.upsert_seller("s-1", tier="bronze")
    override = db.create_override(
        "s-1",
        kind="feature",
        target="beta",
        value=False,
        reason="incident",
        author="ana",
        expires_at=NOW + DAY,
    )
    assert db.list_overrides() == [override]
    assert db.list_overrides(now=NOW + DAY) == []
    clock.advance(DAY - dt.timedelta(microseconds=1))
    assert db.list_overrides() == [override]
    clock.advance(dt.timedelta(microseconds=1))
    assert db.list_overrides() == []
    assert db.list_overrides(now=NOW) == [override]
    assert db.get_override(override.id) == override


def test_scheduled_overrides_are_listed_and_the_engine_applies_them_from_their_start(db, engine):
    """An override that starts later is listed; its engine form applies only from its start."""
    db.upsert_seller("s-1", tier="bronze")
    record = db.create_override(
        "s-1",
        kind="feature",
        target="promoted",
        value=True,
        reason="launch",
        author="ana",
        starts_at=NOW + DAY,
        expires_at=NOW + 2 * DAY,
    )
    assert db.list_overrides() == [record]
    assert not record.active_at(NOW)
    assert record.active_at(NOW + DAY)
    context = {"seller": {"id": "s-1", "tier": "bronze", "verified": False}, "metrics": {"rating": 1.0}}
    overrides = [record.to_override()]
    assert not engine.check("promoted", context, now=NOW, overrides=overrides).allowed
    decision = engine.check("promoted", context, now=NOW + DAY, overrides=overrides)
    assert decision.allowed
    assert decision.rule == f"override:{record.id}"


def test_an_override_without_expiry_is_refused_by_the_database(db):
    """As in policy files, every override ends: the database itself refuses a row without an expiry."""
    db.upsert_seller("s-1", tier="bronze")
    with pytest.raises(TypeError, match="expires_at"):
        db.create_override("s-1", kind="tier", target="gold", reason="r", author="ana")  # type: ignore[call-arg]
    with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO overrides (seller_id, kind, target, reason, author, created_at)"
                " VALUES ('s-1', 'tier', 'gold', 'r', 'ana', :now)"
            ),
            {"now": NOW},
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "feature", "value": 1}, "true or false"),
        ({"kind": "limit", "value": -1}, "whole number"),
        ({"kind": "limit", "value": True}, "whole number"),
        ({"kind": "tier", "value": 3}, "no value"),
        ({"kind": "quota", "value": None}, "kind"),
        ({"kind": "feature", "value": True, "expires_at": NOW}, "not after now"),
        ({"kind": "feature", "value": True, "starts_at": NOW + DAY, "expires_at": NOW + DAY}, "start"),
        ({"kind": "feature", "value": True, "expires_at": NOW.replace(tzinfo=None) + DAY}, "timezone"),
        ({"kind": "feature", "value": True, "target": "x" * 129}, "most is 128"),
        ({"kind": "feature", "value": True, "reason": ""}, "empty"),
        ({"kind": "feature", "value": True, "reason": "a\x00b"}, "NUL"),
    ],
)
def test_malformed_overrides_are_refused(db, kwargs, message):
    """The engine's override rules, the kinds, the expiry and text limits are checked before anything is stored."""
    db.upsert_seller("s-1", tier="bronze")
    arguments = {"target": "promoted", "reason": "r", "author": "ana", "expires_at": NOW + DAY, **kwargs}
    with pytest.raises(ValueError, match=message):
        db.create_override("s-1", **arguments)
    assert db.list_overrides(now=NOW - DAY) == []


def test_override_for_an_unknown_seller_is_not_found(db):
    """An override for a seller not in the store raises NotFoundError."""
    with pytest.raises(NotFoundError):
        db.create_override(
            "nobody", kind="tier", target="gold", reason="r", author="ana", expires_at=NOW + DAY
        )


# --------------------------------------------------------------------------- policy versions


def test_add_get_and_list_policy_versions(db, clock):
    """A bundle is stored inactive with its files; listings are newest first and carry no files."""
    assert db.active_policy_version() is None
    assert db.list_policy_versions() == []
    first = add_version(db, V1)
    clock.advance(DAY)
    second = add_version(db, V2)
    assert (first.active, first.activated_at, first.created_at) == (False, None, NOW)
    assert first.files == {"tiers.yaml": f"# {V1}\n"}
    assert db.get_policy_version(V1) == first
    listed = db.list_policy_versions()
    assert [v.version for v in listed] == [V2, V1]
    assert all(type(v) is PolicyVersionSummary for v in listed)
    assert listed[0] == PolicyVersionSummary(
        **{f.name: getattr(second, f.name) for f in dataclasses.fields(PolicyVersionSummary)}
    )
    assert [v.version for v in db.list_policy_versions(limit=1, offset=1)] == [V1]
    with pytest.raises(NotFoundError):
        db.get_policy_version(V3)


def test_a_real_policy_set_round_trips_and_loads_again(db, small_set):
    """A loaded set's version, digest and files are stored, and the stored files load to the same version."""
    from support import SMALL_SET  # noqa: PLC0415  the text behind the session fixture

    db.add_policy_version(
        version=small_set.version, digest=small_set.digest, files={"policy.yaml": SMALL_SET}, author="ana"
    )
    record = db.activate_policy_version(small_set.version)
    assert tierpolicy.load_files(record.files, root="db").version == small_set.version


def test_a_duplicate_version_is_a_conflict(db):
    """Adding a version already stored raises ConflictError naming it, and keeps the original."""
    original = add_version(db, V1)
    with pytest.raises(ConflictError, match=f"policy version {V1} is already stored") as caught:
        db.add_policy_version(version=V1, digest=V1 + "f" * 48, files={"other.yaml": ""}, author="eve")
    assert isinstance(caught.value.__cause__, sa_exc.IntegrityError)
    assert db.get_policy_version(V1) == original


@pytest.mark.parametrize(
    ("version", "digest", "files"),
    [
        ("ABCDEF0123456789", "abcdef0123456789" + "0" * 48, {"a.yaml": ""}),
        ("abc", "abc" + "0" * 61, {"a.yaml": ""}),
        (V1, V2 + "0" * 48, {"a.yaml": ""}),
        (V1, V1 + "0" * 47, {"a.yaml": ""}),
        (V1, V1 + "0" * 48, {}),
        (V1, V1 + "0" * 48, {"a.yaml": ["not", "text"]}),
    ],
)
def test_malformed_policy_versions_are_refused(db, version, digest, files):
    """Version, digest (which must start with the version) and files are checked before anything is stored."""
    with pytest.raises(ValueError):
        db.add_policy_version(version=version, digest=digest, files=files, author="ana")
    assert db.list_policy_versions() == []


def test_activation_deactivates_the_previous_version(db, clock):
    """Activating a version makes it the only active one; the previous keeps its activation time."""
    add_version(db, V1)
    add_version(db, V2)
    first = db.activate_policy_version(V1)
    assert (first.active, first.activated_at) == (True, NOW)
    clock.advance(DAY)
    second = db.activate_policy_version(V2)
    assert (second.active, second.activated_at) == (True, NOW + DAY)
    assert db.active_policy_version() == second
    old = db.get_policy_version(V1)
    assert (old.active, old.activated_at) == (False, NOW)
    assert [v.version for v in db.list_policy_versions() if v.active] == [V2]


def test_activating_the_active_version_writes_nothing(db, clock):
    """Re-activating the active version changes no activation time and writes no audit entry."""
    add_version(db, V1)
    active = db.activate_policy_version(V1)
    clock.advance(DAY)
    assert db.activate_policy_version(V1, audit=Audit(actor="ana")) == active
    assert db.list_audit() == []


def test_activating_an_unknown_version_is_not_found_and_changes_nothing(db):
    """An unknown version raises NotFoundError and the active version stays."""
    add_version(db, V1)
    db.activate_policy_version(V1)
    with pytest.raises(NotFoundError):
        db.activate_policy_version(V3, audit=Audit(actor="ana"))
    active = db.active_policy_version()
    assert active is not None
    assert active.version == V1
    assert db.list_audit() == []


def test_rollback_returns_to_the_previously_active_version(db, clock):
    """A rollback activates the version active before the current one; a second rollback undoes the first."""
    for version in (V1, V2, V3):
        add_version(db, version)
    db.activate_policy_version(V1)
    clock.advance(DAY)
    db.activate_policy_version(V3)
    clock.advance(DAY)
    db.activate_policy_version(V2)
    clock.advance(DAY)
    assert db.rollback_policy_version().version == V3
    assert db.rollback_policy_version().version == V2
    assert db.rollback_policy_version().version == V3


def test_rollback_is_well_defined_when_the_clock_stands_still_or_runs_back(db, clock):
    """Activation times strictly increase even when the clock does not, so "previous" is never ambiguous."""
    for version in (V1, V2, V3):
        add_version(db, version)
    db.activate_policy_version(V1)
    db.activate_policy_version(V2)
    clock.advance(-DAY)  # a replica whose clock is a day behind
    third = db.activate_policy_version(V3)
    assert third.activated_at is not None
    assert third.activated_at > NOW
    assert db.rollback_policy_version().version == V2
    assert db.rollback_policy_version().version == V3


def test_rollback_without_a_previous_version_is_not_found(db):
    """With no version, or only the active one ever activated, there is nothing to roll back to."""
    with pytest.raises(NotFoundError, match="roll back"):
        db.rollback_policy_version()
    add_version(db, V1)
    add_version(db, V2)
    db.activate_policy_version(V1)
    with pytest.raises(NotFoundError, match="roll back"):
        db.rollback_policy_version()
    active = db.active_policy_version()
    assert active is not None
    assert active.version == V1


def test_the_database_itself_refuses_a_second_active_version(db):
    """Writing a second active row behind the store's back fails on the partial unique index."""
    add_version(db, V1)
    add_version(db, V2)
    db.activate_policy_version(V1)
    with db.engine.connect() as connection:
        with pytest.raises(sa_exc.IntegrityError), connection.begin():
            connection.execute(
                sa.text("UPDATE policy_versions SET active = true WHERE version = :v"), {"v": V2}
            )
        with pytest.raises(sa_exc.IntegrityError), connection.begin():
            connection.execute(
                sa.text(
                    "INSERT INTO policy_versions (version, digest, files, author, created_at, active)"
                    " VALUES (:v, :d, '{}', 'eve', CURRENT_TIMESTAMP, true)"
                ),
                {"v": V3, "d": V3 + "0" * 48},
            )
        # Any number of inactive rows is fine: only active rows are in the index.
        with connection.begin():
            connection.execute(
                sa.text(
                    "INSERT INTO policy_versions (version, digest, files, author, created_at, active)"
                    " VALUES (:v, :d, '{}', 'eve', CURRENT_TIMESTAMP, false)"
                ),
                {"v": V3, "d": V3 + "0" * 48},
            )
    assert [v.version for v in db.list_policy_versions() if v.active] == [V1]


def test_concurrent_activations_leave_exactly_one_active_version(db):
    """Two threads activating different versions at once both succeed and leave exactly one active."""
    for version in (V1, V2, V3):
        add_version(db, version)
    db.activate_policy_version(V3)
    for _ in range(5):
        results = run_together(lambda: db.activate_policy_version(V1), lambda: db.activate_policy_version(V2))
        assert all(isinstance(result, PolicyVersionRecord) for result in results), results
        active = [v.version for v in db.list_policy_versions() if v.active]
        assert len(active) == 1
        assert active[0] in (V1, V2)
        db.activate_policy_version(V3)


# --------------------------------------------------------------------------- audit


def test_append_and_list_audit_entries(db, clock):
    """Entries come newest first and can be narrowed to one actor, target or action, and paged."""
    db.append_audit(actor="ana", action="seller.view", target="seller:s-1")
    clock.advance(DAY)
    db.append_audit(actor="bo", action="override.create", target="override:1", after={"value": True})
    clock.advance(DAY)
    last = db.append_audit(
        actor="ana",
        action="override.delete",
        target="override:1",
        before={"value": True},
        request_id="req-9",
    )
    assert (last.at, last.before, last.after, last.request_id) == (
        NOW + 2 * DAY,
        {"value": True},
        None,
        "req-9",
    )
    assert [e.action for e in db.list_audit()] == ["override.delete", "override.create", "seller.view"]
    assert [e.action for e in db.list_audit(actor="ana")] == ["override.delete", "seller.view"]
    assert [e.actor for e in db.list_audit(target="override:1")] == ["ana", "bo"]
    assert [e.actor for e in db.list_audit(action="seller.view")] == ["ana"]
    assert [e.action for e in db.list_audit(limit=1, offset=1)] == ["override.create"]
    back_dated = db.append_audit(actor="cy", action="import", target="seller:s-0", at=NOW - DAY)
    assert db.list_audit()[-1] == back_dated


def test_audited_writes_record_who_did_what_with_before_and_after(db, clock):
    """Every audited write adds one entry in its own transaction, naming actor, target and the change."""
    who = Audit(actor="ana", request_id="req-1")
    db.upsert_seller("s-1", tier="bronze", audit=who)
    clock.advance(DAY)
    db.upsert_seller("s-1", tier="bronze", attributes={"verified": True}, audit=who)
    db.apply_tier_change("s-1", "gold", reason="partner", audit=who)
    override = db.create_override(
        "s-1", kind="tier", target="gold", reason="partner", author="ana", expires_at=NOW + 2 * DAY, audit=who
    )
    db.delete_override(override.id, audit=who)
    add_version(db, V1, audit=who)
    add_version(db, V2)
    db.activate_policy_version(V1, audit=who)
    db.activate_policy_version(V2, audit=who)
    db.rollback_policy_version(audit=who)
    entries = list(reversed(db.list_audit()))
    assert [(e.action, e.target) for e in entries] == [
        ("seller.upsert", "seller:s-1"),
        ("seller.upsert", "seller:s-1"),
        ("tier.change", "seller:s-1"),
        ("override.create", f"override:{override.id}"),
        ("override.delete", f"override:{override.id}"),
        ("policy.add", f"policy:{V1}"),
        ("policy.activate", f"policy:{V1}"),
        ("policy.activate", f"policy:{V2}"),
        ("policy.rollback", f"policy:{V1}"),
    ]
    assert all((e.actor, e.request_id) == ("ana", "req-1") for e in entries)
    created, updated, tier, made, deleted, added, first, second, rollback = entries
    assert created.before is None
    assert created.after is not None
    assert created.after["tier"] == "bronze"
    assert created.after["tier_since"] == "2026-11-28T12:00:00Z"
    assert updated.before is not None
    assert updated.after is not None
    assert (updated.before["attributes"], updated.after["attributes"]) == ({}, {"verified": True})
    assert (tier.before, tier.after) == (
        {"tier": "bronze", "tier_since": "2026-11-28T12:00:00Z"},
        {"tier": "gold", "tier_since": "2026-11-29T12:00:00Z", "reason": "partner", "policy_version": None},
    )
    assert made.before is None
    assert made.after == deleted.before == as_json(override)
    assert deleted.after is None
    assert added.after is not None
    assert "files" not in added.after
    assert (first.before, first.after) == ({"active_version": None}, {"active_version": V1})
    assert (second.before, second.after) == ({"active_version": V1}, {"active_version": V2})
    assert (rollback.before, rollback.after) == ({"active_version": V2}, {"active_version": V1})


def test_a_write_and_its_audit_entry_commit_together(db):
    """When the audit entry cannot be written, the change it audits is not stored either."""
    db.upsert_seller("s-1", tier="bronze")
    with pytest.raises(ValueError, match="actor"):
        db.create_override(
            "s-1",
            kind="tier",
            target="gold",
            reason="r",
            author="ana",
            expires_at=NOW + DAY,
            audit=Audit(actor=""),
        )
    assert db.list_overrides() == []
    with pytest.raises(ValueError, match="request id"):
        db.apply_tier_change("s-1", "gold", reason="r", audit=Audit(actor="ana", request_id="x" * 300))
    assert db.get_seller("s-1").tier == "bronze"
    assert db.list_audit() == []


def test_as_json_refuses_what_is_not_a_record():
    """as_json renders dataclass records only."""
    with pytest.raises(TypeError):
        as_json({"a": 1})
    with pytest.raises(TypeError):
        as_json(OverrideRecord)


# --------------------------------------------------------------------------- time


def test_timestamps_round_trip_as_the_same_aware_utc_instant(db):
    """A time given in any zone comes back as the same instant, timezone-aware UTC, to the microsecond."""
    db.upsert_seller("s-1", tier="bronze")
    kolkata = dt.timezone(dt.timedelta(hours=5, minutes=30))
    taken = dt.datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=kolkata)
    snapshot = db.record_metrics("s-1", {"orders": 1}, taken_at=taken)
    stored = db.latest_metrics("s-1")
    assert stored is not None
    for value in (snapshot.taken_at, stored.taken_at):
        assert value == taken
        assert value.tzinfo == dt.UTC
        assert value.utcoffset() == dt.timedelta(0)
    assert stored.taken_at == dt.datetime(2026, 3, 28, 20, 0, 15, 123456, tzinfo=dt.UTC)


def test_sqlite_stores_naive_utc_text_that_sorts_by_instant(tmp_path):
    """On SQLite a timestamp is kept as UTC text without a zone, so text order is time order."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    with Database.from_url(url) as db:
        db.upsert_seller("s-1", tier="bronze")
        plus_two = dt.timezone(dt.timedelta(hours=2))
        db.record_metrics("s-1", {"n": 1}, taken_at=dt.datetime(2026, 1, 1, 1, 0, tzinfo=plus_two))
        db.record_metrics("s-1", {"n": 2}, taken_at=dt.datetime(2026, 1, 1, 0, 30, tzinfo=dt.UTC))
        with db.engine.connect() as connection:
            raw = connection.execute(
                sa.text("SELECT taken_at FROM metrics_snapshots ORDER BY taken_at")
            ).all()
        assert [row[0] for row in raw] == ["2025-12-31 23:00:00.000000", "2026-01-01 00:30:00.000000"]
        latest = db.latest_metrics("s-1")
        assert latest is not None
        assert latest.metrics == {"n": 2}


def test_naive_times_are_refused(db):
    """A naive datetime, given or returned by the clock, is a ValueError: its zone would be a guess."""
    db.upsert_seller("s-1", tier="bronze")
    with pytest.raises(ValueError, match="timezone-aware"):
        db.record_metrics("s-1", {}, taken_at=dt.datetime(2026, 1, 1))  # noqa: DTZ001  the point of the test
    with pytest.raises(TypeError, match="datetime"):
        db.record_metrics("s-1", {}, taken_at="2026-01-01T00:00:00Z")
    with pytest.raises(ValueError, match="timezone-aware"):
        db.apply_tier_change("s-1", "gold", reason="r", at=dt.datetime(2026, 1, 1))  # noqa: DTZ001  as above
    naive = Database(db.engine, now=lambda: dt.datetime(2026, 1, 1))  # noqa: DTZ001  as above
    with pytest.raises(ValueError, match="the clock's time"):
        naive.upsert_seller("s-2", tier="bronze")


def test_the_column_type_refuses_naive_times_and_reads_any_zone_as_utc():
    """UTCDateTime converts aware values to UTC, refuses naive ones, and reads naive results as UTC."""
    column = UTCDateTime()
    sqlite_dialect = sa.create_engine("sqlite://").dialect
    postgres_dialect = postgresql.dialect()
    aware = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert column.process_bind_param(aware, sqlite_dialect) == dt.datetime(2026, 1, 1, 11)  # noqa: DTZ001  SQLite's form
    assert column.process_bind_param(aware, postgres_dialect) == aware
    assert column.process_bind_param(None, sqlite_dialect) is None
    with pytest.raises(ValueError, match="naive"):
        column.process_bind_param(dt.datetime(2026, 1, 1), sqlite_dialect)  # noqa: DTZ001  the point
    assert column.process_result_value(dt.datetime(2026, 1, 1), sqlite_dialect) == dt.datetime(  # noqa: DTZ001  as stored
        2026, 1, 1, tzinfo=dt.UTC
    )
    assert column.process_result_value(aware, postgres_dialect) == aware
    assert column.process_result_value(aware, postgres_dialect).tzinfo == dt.UTC  # type: ignore[union-attr]
    assert column.process_result_value(None, postgres_dialect) is None


# --------------------------------------------------------------------------- input checks


def test_text_is_checked_the_same_on_both_databases(db):
    """Over-long ids, NUL characters, lone surrogates and wrong types are refused before the database."""
    with pytest.raises(ValueError, match="most is 128"):
        db.upsert_seller("s" * 129, tier="bronze")
    with pytest.raises(ValueError, match="NUL"):
        db.upsert_seller("s-\x00", tier="bronze")
    with pytest.raises(ValueError, match="Unicode"):
        db.upsert_seller("s-\udc80", tier="bronze")
    with pytest.raises(TypeError, match="string"):
        db.upsert_seller(42, tier="bronze")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        db.upsert_seller("s-1", tier="")
    with pytest.raises(ValueError, match="policy version"):
        db.upsert_seller("s-1", tier="bronze", policy_version="latest")
    with pytest.raises(ValueError, match="empty"):
        db.upsert_seller("s-1", tier="bronze", reason="")
    with pytest.raises(ValueError, match="most is 256"):
        db.append_audit(actor="ana", action="a" * 257, target="t")
    assert db.list_sellers() == []


# --------------------------------------------------------------------------- errors


def test_an_unreachable_database_is_unavailable_without_leaking_the_password():
    """A PostgreSQL URL to a closed port raises StoreUnavailableError from the driver's error, password hidden."""
    url = f"postgresql://tierpolicy:s3cr3t-pw@127.0.0.1:{closed_port()}/tierpolicy"
    with Database.from_url(url) as db:
        assert db.engine.url.drivername == "postgresql+psycopg"
        assert "s3cr3t-pw" not in repr(db)
        for call in (db.ping, lambda: db.get_seller("s-1"), lambda: db.upsert_seller("s-1", tier="bronze")):
            with pytest.raises(StoreUnavailableError) as caught:
                call()
            error = caught.value
            assert isinstance(error.__cause__, sa_exc.OperationalError)
            assert isinstance(error, ConnectionError)
            assert "s3cr3t-pw" not in str(error)
            assert "s3cr3t-pw" not in error.store
            assert error.store == f"postgresql+psycopg://tierpolicy:***@127.0.0.1:{url.rsplit(':', 1)[1]}"


def test_migrating_an_unreachable_database_is_unavailable():
    """upgrade() on a closed port raises StoreUnavailableError, password hidden."""
    with pytest.raises(StoreUnavailableError) as caught:
        upgrade(f"postgresql://u:hunter2@127.0.0.1:{closed_port()}/db")
    assert "hunter2" not in str(caught.value)


def test_a_sqlite_file_that_cannot_be_opened_is_unavailable(tmp_path):
    """A SQLite path in a missing directory raises StoreUnavailableError (SQLITE_CANTOPEN)."""
    url = f"sqlite:///{tmp_path / 'missing' / 'store.db'}"
    with Database.from_url(url) as db, pytest.raises(StoreUnavailableError) as caught:
        db.ping()
    assert isinstance(caught.value.__cause__, sa_exc.OperationalError)


def test_a_database_without_the_tables_says_to_migrate(database_url):
    """Using a database that was never migrated raises StoreError telling to apply the migrations."""
    with (
        Database.from_url(database_url) as db,
        pytest.raises(StoreError, match="apply the migrations") as caught,
    ):
        db.list_sellers()
    assert not isinstance(caught.value, StoreUnavailableError)
    assert isinstance(caught.value.__cause__, sa_exc.DBAPIError)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "does not parse"),
        ("mysql://root:pw@localhost/db", "unsupported database 'mysql'"),
        ("postgresql+nodriver://u:pw@localhost/db", "cannot set up"),
    ],
)
def test_unusable_urls_are_store_errors(url, message):
    """URLs that do not parse, other databases and missing drivers raise StoreError without the password."""
    with pytest.raises(StoreError, match=message) as caught:
        Database.from_url(url)
    assert ":pw@" not in str(caught.value)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_postgresql_urls_get_the_psycopg_driver(scheme):
    """postgresql:// and postgres:// URLs use psycopg 3; an explicit +psycopg is kept."""
    with Database.from_url(f"{scheme}://u@localhost/db") as db:
        assert db.engine.url.drivername == "postgresql+psycopg"
        assert db.engine.dialect.name == "postgresql"


def test_postgresql_connect_timeout_defaults_to_five_seconds_unless_the_url_sets_one():
    """Connections give up after 5 s by default; a connect_timeout in the URL wins."""

    class Connecting(Exception):  # noqa: N818  a signal, not an error
        pass

    def timeout_of(url: str) -> object:
        with Database.from_url(url) as db:

            @sa.event.listens_for(db.engine, "do_connect")
            def capture(dialect, record, cargs, cparams):  # noqa: ARG001  the event's signature
                raise Connecting(cparams.get("connect_timeout"))

            with pytest.raises(Connecting) as caught:
                db.ping()
            return caught.value.args[0]

    assert timeout_of("postgresql://u@localhost/db") == 5
    assert timeout_of("postgresql://u@localhost/db?connect_timeout=2") == "2"


def test_sqlite_files_are_set_up_for_concurrent_use(tmp_path):
    """A SQLite file gets write-ahead logging and enforced foreign keys on every connection."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Database.from_url(url) as db, db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_redact_hides_the_password_and_survives_garbage():
    """Redact replaces the password with *** and names an unparseable URL without echoing it."""
    assert redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"
    assert redact("::garbage::secret") == "<unparseable database URL>"


def test_translation_of_driver_errors():
    """Connection, pool and server-state errors are unavailable; constraint errors conflicts; the rest StoreError."""

    class DriverError(Exception):
        def __init__(self, message: str, sqlstate: str | None = None) -> None:
            super().__init__(message)
            self.sqlstate = sqlstate

    def wrapped(cls: type[sa_exc.DBAPIError], message: str, sqlstate: str | None = None) -> sa_exc.DBAPIError:
        return cls("SELECT 1", {"password": LEAKED}, DriverError(message, sqlstate))

    store = "postgresql+psycopg://u:***@h/db"
    cases: list[tuple[sa_exc.SQLAlchemyError, type[StoreError]]] = [
        (sa_exc.DisconnectionError("gone"), StoreUnavailableError),
        (sa_exc.TimeoutError("QueuePool limit reached"), StoreUnavailableError),
        (wrapped(sa_exc.InterfaceError, "the connection is closed"), StoreUnavailableError),
        (wrapped(sa_exc.OperationalError, "server closed the connection"), StoreUnavailableError),
        (wrapped(sa_exc.InternalError, "admin shutdown", "57P01"), StoreUnavailableError),
        (wrapped(sa_exc.IntegrityError, "duplicate key", "23505"), ConflictError),
        (wrapped(sa_exc.DataError, "invalid input syntax"), StoreError),
        (sa_exc.InvalidRequestError("bad use"), StoreError),
    ]
    for error, expected in cases:
        translated = translate(error, store, secret=LEAKED)
        assert type(translated) is expected, (error, translated)
        assert translated.store == store
        assert LEAKED not in str(translated)
        assert "SELECT 1" not in str(translated)
    invalidated = wrapped(sa_exc.DatabaseError, "terminating connection")
    invalidated.connection_invalidated = True
    assert type(translate(invalidated, store)) is StoreUnavailableError
    quoted = translate(
        wrapped(sa_exc.ProgrammingError, f"password {LEAKED} rejected " + "x" * 600), store, secret=LEAKED
    )
    assert LEAKED not in str(quoted)
    assert "***" in str(quoted)
    assert str(quoted).endswith(f"... ({store})")
    assert str(translate(wrapped(sa_exc.DataError, ""), store)).startswith(
        "the database failed: DriverError ("
    )


def test_store_errors_are_tierpolicy_errors():
    """The store's own exceptions belong to the library's tree, catchable with one except."""
    assert issubclass(NotFoundError, tierpolicy.TierpolicyError)
    assert issubclass(ConflictError, StoreError)
    assert not issubclass(ConflictError, StoreUnavailableError)


def test_in_memory_url_is_a_single_shared_database():
    """``sqlite://`` is one database for every thread of the process (tests, one-off tools)."""
    with Database.from_url("sqlite://") as db:
        db.migrate()
        assert db.revision() == "0001"
        results = run_together(lambda: db.upsert_seller("s-1", tier="bronze"))
        assert not isinstance(results[0], BaseException)
        assert db.get_seller("s-1").tier == "bronze"
