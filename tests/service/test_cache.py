"""The seller cache: entitlements without the database, invalidated at once, expiring on an injected clock."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import event

import tierpolicy
from eventsupport import ADMIN, ATTRIBUTES, GOLD_METRICS, SERVICE, grant, seller_auth
from pgserver import closed_port
from servicesupport import app_for, calls
from tierpolicy.adapters.sqlalchemy import Database
from tierpolicy.service import PREFIX
from tierpolicy.service._cache import SellerCache, seconds_until_change
from tierpolicy.service._events import Event, policy_activated

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
V1 = {path.name: path.read_text() for path in sorted((ROOT / "policies").glob("*.yaml"))}
V2 = {**V1, "tiers.yaml": V1["tiers.yaml"] + "\n# v2: the same policies, another version\n"}
ENTITLEMENTS = f"{PREFIX}/sellers/s-1/entitlements"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The current time."""
        return self.now


@contextlib.contextmanager
def statements(database: Database) -> Iterator[list[str]]:
    """Every SQL statement ``database`` runs inside the block (a listener on its real engine)."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_rest) -> None:
        seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", record)


def put(seller_id: str = "s-1", tier: str = "bronze") -> tuple[str, str, dict[str, object]]:
    """The request that creates or replaces a seller."""
    return (
        "PUT",
        f"{PREFIX}/sellers/{seller_id}",
        {"json": {"tier": tier, "attributes": ATTRIBUTES}, "headers": ADMIN},
    )


GET = ("GET", ENTITLEMENTS, {"headers": SERVICE})


@pytest.fixture(scope="module")
def policy_set() -> tierpolicy.PolicySet:
    """The shipped marketplace policies."""
    return tierpolicy.load(ROOT / "policies").policy_set


def service(policy_set: tierpolicy.PolicySet, **settings: object):
    """The service over the marketplace policies with one bronze seller, s-1."""
    app = app_for(tierpolicy.Engine(policy_set), policy_dir=ROOT / "policies", **settings)
    [created] = calls(app, put())
    assert created.status_code == 200
    return app


# ----------------------------------------------------------------------------- over HTTP


def test_a_cache_hit_answers_entitlements_without_the_database(policy_set):
    """The second read of a seller's entitlements runs no SQL and answers the same data."""
    app = service(policy_set)
    with statements(app.state.database) as first_sql:
        [first] = calls(app, GET)
    with statements(app.state.database) as second_sql:
        [second] = calls(app, GET)
    assert first.status_code == second.status_code == 200
    assert len(first_sql) >= 3  # the seller, its metrics, its overrides
    assert second_sql == []
    assert second.json()["data"] == first.json()["data"]
    assert second.json()["meta"]["request_id"] != first.json()["meta"]["request_id"]
    assert (app.state.cache.hits, app.state.cache.misses) == (1, 1)


CHANGES = {
    "an override granted": lambda _: (
        "POST",
        f"{PREFIX}/sellers/s-1/overrides",
        {"json": grant(), "headers": ADMIN},
    ),
    "the seller replaced": lambda _: put("s-1", "platinum"),
    "metrics recorded": lambda _: (
        "POST",
        f"{PREFIX}/sellers/s-1/metrics",
        {"json": {"metrics": GOLD_METRICS}, "headers": SERVICE},
    ),
    "an override revoked": lambda override_id: (
        "DELETE",
        f"{PREFIX}/sellers/s-1/overrides/{override_id}",
        {"headers": ADMIN},
    ),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_a_change_on_this_replica_drops_the_entry_at_once(policy_set, change):
    """Granting or revoking an override, replacing the seller or recording metrics: the next read recomputes."""
    app = service(policy_set)
    [existing] = calls(
        app, ("POST", f"{PREFIX}/sellers/s-1/overrides", {"json": grant("listing.video"), "headers": ADMIN})
    )
    [cached, changed] = calls(app, GET, change(existing.json()["data"]["id"]))
    assert changed.status_code in {200, 201}, changed.text
    with statements(app.state.database) as sql:
        [fresh] = calls(app, GET)
    assert sql != []
    assert app.state.cache.misses == 2
    assert fresh.status_code == 200
    assert cached.json()["data"]["seller_id"] == fresh.json()["data"]["seller_id"] == "s-1"


def test_a_granted_override_shows_in_the_very_next_read(policy_set):
    """With a 30 s TTL, an override granted on this replica is in the next answer, not 30 s later."""
    app = service(policy_set)
    before, _, after = calls(
        app, GET, ("POST", f"{PREFIX}/sellers/s-1/overrides", {"json": grant(), "headers": ADMIN}), GET
    )
    feature = "support.dedicated_manager"
    assert before.json()["data"]["features"][feature]["allowed"] is False
    assert (
        after.json()["data"]["features"][feature]["allowed"],
        after.json()["data"]["features"][feature]["reason"],
    ) == (
        True,
        "OVERRIDE",
    )


def test_entries_expire_after_seller_cache_ttl_on_the_injected_clock(policy_set):
    """SELLER_CACHE_TTL=10: a read 9.9 s later is a hit, a read at 10 s reads the database again."""
    app = service(policy_set, seller_cache_ttl=10)
    clock = app.state.cache.clock = Clock()
    calls(app, GET)
    clock.now += 9.9
    with statements(app.state.database) as within:
        calls(app, GET)
    clock.now += 0.1
    with statements(app.state.database) as expired:
        calls(app, GET)
    assert within == []
    assert expired != []


def test_another_policy_version_misses_at_once(policy_set):
    """After an activation the replica answers from the new version: nothing cached under the old one is used."""
    app = service(policy_set)
    [before] = calls(app, GET)
    [uploaded] = calls(
        app,
        ("POST", f"{PREFIX}/policy/versions", {"json": {"files": V2, "activate": True}, "headers": ADMIN}),
    )
    assert uploaded.status_code == 201, uploaded.text
    with statements(app.state.database) as sql:
        [after] = calls(app, GET)
    new = tierpolicy.load_files(V2, root="x").version
    assert before.json()["meta"]["policy_version"] != new
    assert (after.json()["meta"]["policy_version"], after.json()["data"]["policy_version"]) == (new, new)
    assert sql != []


def test_a_ttl_of_zero_turns_the_cache_off(policy_set):
    """SELLER_CACHE_TTL=0: every read goes to the database."""
    app = service(policy_set, seller_cache_ttl=0)
    calls(app, GET)
    with statements(app.state.database) as sql:
        calls(app, GET)
    assert sql != []
    assert len(app.state.cache) == 0


def test_an_entry_never_outlives_the_next_override_expiry(policy_set):
    """With a day-long TTL, entitlements that an override expiring in a minute shapes are kept only that minute."""
    app = service(policy_set, seller_cache_ttl=86400)
    clock = app.state.cache.clock = Clock()
    expiring = {**grant(), "expires_at": (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)).isoformat()}
    calls(app, ("POST", f"{PREFIX}/sellers/s-1/overrides", {"json": expiring, "headers": ADMIN}), GET)
    clock.now += 50
    with statements(app.state.database) as within:
        calls(app, GET)
    clock.now += 15
    with statements(app.state.database) as past:
        calls(app, GET)
    assert within == []
    assert past != []


def test_a_cached_answer_never_reaches_another_seller(policy_set):
    """Authorisation comes before the cache: another seller's token still gets 404 for a cached seller."""
    app = service(policy_set)
    own, other = calls(
        app,
        ("GET", ENTITLEMENTS, {"headers": seller_auth("s-1")}),
        ("GET", ENTITLEMENTS, {"headers": seller_auth("s-2")}),
    )
    assert own.status_code == 200
    assert (other.status_code, other.json()["code"]) == (404, "SELLER_NOT_FOUND")


def test_an_unknown_seller_is_not_cached(policy_set):
    """A 404 for a seller that does not exist is not kept: once created, the seller is found."""
    app = service(policy_set)
    missing, _, found = calls(
        app,
        ("GET", f"{PREFIX}/sellers/s-9/entitlements", {"headers": SERVICE}),
        put("s-9"),
        ("GET", f"{PREFIX}/sellers/s-9/entitlements", {"headers": SERVICE}),
    )
    assert (missing.status_code, found.status_code) == (404, 200)


# ----------------------------------------------------------------------------- the cache itself


def test_entries_are_keyed_by_seller_and_policy_version():
    """An entry answers its seller under its version only."""
    cache = SellerCache(None, ttl=30, clock=Clock())
    assert cache.put_entitlements("s-1", "v1", {"n": 1}, ticket=cache.ticket())
    assert cache.entitlements("s-1", "v1") == {"n": 1}
    assert cache.entitlements("s-1", "v2") is None
    assert cache.entitlements("s-2", "v1") is None


def test_events_drop_what_they_make_stale():
    """A seller-scoped event drops that seller's entries; resync and policy.activated drop everything; a ping nothing."""
    cache = SellerCache(None, ttl=30, clock=Clock())

    def fill() -> None:
        for seller in ("s-1", "s-2"):
            cache.put_entitlements(seller, "v1", {"s": seller}, ticket=cache.ticket())

    fill()
    cache.apply(Event("ping"))
    assert len(cache) == 2
    cache.apply(Event("override.created", "s-1", {"override_id": 1}))
    assert (cache.entitlements("s-1", "v1"), cache.entitlements("s-2", "v1")) == (None, {"s": "s-2"})
    for everything in (Event("resync"), policy_activated("v2", "v1")):
        fill()
        cache.apply(everything)
        assert len(cache) == 0


def test_a_value_read_while_its_seller_changed_is_not_kept():
    """A put whose ticket predates an invalidation is refused, so a stale read cannot outlive the change."""
    cache = SellerCache(None, ttl=30, clock=Clock())
    ticket = cache.ticket()
    cache.invalidate("s-1")  # the change lands while the route reads the old state
    assert cache.put_entitlements("s-1", "v1", {"stale": True}, ticket=ticket) is False
    assert cache.entitlements("s-1", "v1") is None
    assert cache.put_entitlements("s-1", "v1", {"fresh": True}, ticket=cache.ticket()) is True


def test_the_cache_is_bounded_and_drops_the_least_recently_used():
    """Past max_entries the entry used longest ago goes; a read counts as a use."""
    cache = SellerCache(None, ttl=30, max_entries=2, clock=Clock())
    for seller in ("s-1", "s-2"):
        cache.put_entitlements(seller, "v1", {"s": seller}, ticket=cache.ticket())
    assert cache.entitlements("s-1", "v1") is not None  # s-2 is now the least recently used
    cache.put_entitlements("s-3", "v1", {"s": "s-3"}, ticket=cache.ticket())
    assert len(cache) == 2
    assert cache.entitlements("s-2", "v1") is None
    assert cache.entitlements("s-1", "v1") == {"s": "s-1"}
    cache.invalidate("s-2")  # its index entry went with it: nothing to trip over
    assert len(cache) == 2


def test_max_age_shortens_an_entry_and_seconds_until_change_finds_the_next_moment():
    """An entry lives min(ttl, max_age); the next change is the nearest future start or expiry."""
    clock = Clock()
    cache = SellerCache(None, ttl=30, clock=clock)
    cache.put_entitlements("s-1", "v1", {}, ticket=cache.ticket(), max_age=5)
    clock.now += 5
    assert cache.entitlements("s-1", "v1") is None
    assert cache.put_entitlements("s-1", "v1", {}, ticket=cache.ticket(), max_age=0) is False
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    later = [
        None,
        now - dt.timedelta(hours=1),
        now + dt.timedelta(seconds=90),
        now + dt.timedelta(seconds=30),
    ]
    assert seconds_until_change(later, now) == 30
    assert seconds_until_change([None, now], now) is None


def test_construction_refuses_nonsense():
    """A negative TTL or a cache of no entries is a ValueError."""
    with pytest.raises(ValueError, match="ttl"):
        SellerCache(None, ttl=-1)
    with pytest.raises(ValueError, match="max_entries"):
        SellerCache(None, ttl=1, max_entries=0)


def test_tier_of_reads_the_store_once_and_caches_unknown_sellers_too(tmp_path):
    """tier_of answers the stored tier (None for an unknown seller) from one read, until the seller changes."""
    database = Database.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    database.migrate()
    database.upsert_seller("s-1", tier="gold")
    cache = SellerCache(database, ttl=30, clock=Clock())
    with statements(database) as sql:
        assert [cache.tier_of_blocking("s-1"), cache.tier_of_blocking("s-1")] == ["gold", "gold"]
        assert [cache.tier_of_blocking("nobody"), cache.tier_of_blocking("nobody")] == [None, None]
    assert [s.split()[0] for s in sql if s != "BEGIN"] == ["SELECT", "SELECT"]  # one read per seller
    database.upsert_seller("s-1", tier="silver")
    cache.apply(Event("seller.updated", "s-1", {"tier": "silver"}))
    assert asyncio.run(cache.tier_of("s-1")) == "silver"
    with statements(database) as hit:
        assert asyncio.run(cache.tier_of("s-1")) == "silver"
    assert hit == []
    database.close()


def test_tier_of_on_an_unreachable_database():
    """The blocking lookup raises the store's error; the async one logs it and answers None, caching nothing."""
    database = Database.from_url(
        f"postgresql://nobody@127.0.0.1:{closed_port()}/none", connect_args={"connect_timeout": 2}
    )
    cache = SellerCache(database, ttl=30)
    with pytest.raises(tierpolicy.StoreError):
        cache.tier_of_blocking("s-1")
    assert asyncio.run(cache.tier_of("s-1")) is None
    assert len(cache) == 0
    database.close()
