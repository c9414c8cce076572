"""Seller and policy events over the WebSocket, on real uvicorn servers; across replicas through a real Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

import tierpolicy
from eventsupport import (
    ADMIN,
    GOLD_METRICS,
    SERVICE,
    WAIT,
    as_seller,
    closing,
    events_of,
    grant,
    next_event,
    put_seller,
    served,
)
from servicesupport import SECRET, app_for, token
from tierpolicy.adapters.sqlalchemy import Database
from tierpolicy.service import PREFIX, Authenticator, mint_token
from tierpolicy.service._events import Event, EventBus, Subscriber, policy_activated

ROOT = Path(__file__).resolve().parents[2]
V1 = {path.name: path.read_text() for path in sorted((ROOT / "policies").glob("*.yaml"))}
V2 = {**V1, "tiers.yaml": V1["tiers.yaml"] + "\n# v2: the same policies, another version\n"}


def version_of(files: dict[str, str]) -> str:
    """The version the engine gives a bundle."""
    return tierpolicy.load_files(files, root="x").version


def app_on(database_url: str, **settings: object):
    """The service on ``database_url`` serving the shipped policies."""
    return app_for(database_url=database_url, policy_dir=ROOT / "policies", **settings)


def fast(failures: int) -> float:  # noqa: ARG001  the backoff signature
    """Reconnect to Redis almost at once."""
    return 0.05


# ----------------------------------------------------------------------------- one replica


def test_a_seller_gets_its_own_changes_and_policy_activations_but_not_another_sellers(tmp_path):
    """A seller's stream has its own metrics, tier, override and seller events and policy.activated; never another seller's."""
    with served(app_on(f"sqlite:///{tmp_path / 'store.db'}")) as http:
        put_seller(http, "s-1")
        put_seller(http, "s-2")
        with events_of(http, as_seller("s-1")) as ws:
            # Another seller's event first: if it leaked, it would be the next one read.
            assert (
                http.post(f"{PREFIX}/sellers/s-2/overrides", json=grant(), headers=ADMIN).status_code == 201
            )
            created = http.post(f"{PREFIX}/sellers/s-1/overrides", json=grant(), headers=ADMIN).json()["data"]
            event = next_event(ws)
            assert event["type"] == "override.created"
            assert (event["seller_id"], event["override_id"], event["target"], event["kind"]) == (
                "s-1",
                created["id"],
                "support.dedicated_manager",
                "feature",
            )
            assert (
                http.delete(f"{PREFIX}/sellers/s-1/overrides/{created['id']}", headers=ADMIN).status_code
                == 200
            )
            deleted = next_event(ws)
            assert (deleted["type"], deleted["override_id"]) == ("override.deleted", created["id"])

            metrics = http.post(
                f"{PREFIX}/sellers/s-1/metrics", json={"metrics": GOLD_METRICS}, headers=SERVICE
            )
            assert metrics.status_code == 201
            recorded = next_event(ws)
            assert (recorded["type"], recorded["taken_at"]) == (
                "metrics.recorded",
                metrics.json()["data"]["taken_at"],
            )

            assert (
                http.post(f"{PREFIX}/tiers/reevaluate", json={}, headers=SERVICE).json()["data"]["changed"]
                == 1
            )
            changed = next_event(ws)
            assert (changed["type"], changed["seller_id"], changed["from"], changed["to"]) == (
                "tier.changed",
                "s-1",
                "bronze",
                "gold",
            )
            assert changed["reason"].startswith("upgrade: ")

            put_seller(http, "s-1", "silver")
            updated, direct = next_event(ws), next_event(ws)
            assert (updated["type"], updated["tier"], updated["previous_tier"]) == (
                "seller.updated",
                "silver",
                "gold",
            )
            assert (direct["type"], direct["from"], direct["to"], direct["reason"]) == (
                "tier.changed",
                "gold",
                "silver",
                "tier set directly",
            )

            uploaded = http.post(
                f"{PREFIX}/policy/versions", json={"files": V2, "activate": True}, headers=ADMIN
            )
            assert uploaded.status_code == 201, uploaded.text
            activated = next_event(ws)
            assert activated["type"] == "policy.activated"
            assert (activated["version"], activated["previous"]) == (version_of(V2), version_of(V1))
            assert "seller_id" not in activated
            assert len(activated["id"]) == 32
            assert dt.datetime.fromisoformat(activated["at"]).tzinfo is not None


def test_admin_and_service_tokens_see_every_seller_or_filter_one(tmp_path):
    """Admins see every seller's events; a service token with ?seller_id= (and a query token) sees only that seller's."""
    with (
        served(app_on(f"sqlite:///{tmp_path / 'store.db'}")) as http,
        events_of(http, ADMIN) as everyone,
        events_of(http, query=f"seller_id=s-2&access_token={token('service', 'job')}") as one,
    ):
        put_seller(http, "s-1")
        put_seller(http, "s-2")
        assert [(e["type"], e["seller_id"]) for e in (next_event(everyone), next_event(everyone))] == [
            ("seller.updated", "s-1"),
            ("seller.updated", "s-2"),
        ]
        only = next_event(one)
        assert (only["type"], only["seller_id"], only["previous_tier"]) == ("seller.updated", "s-2", None)


def expired_token() -> str:
    """A seller token that expired an hour ago."""
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    return mint_token(
        SECRET, role="seller", subject="u", seller_id="s-1", ttl=3600, clock=lambda: an_hour_ago
    )


REFUSALS = {
    "no token": ({}, "", "AUTHENTICATION_REQUIRED", "needs a bearer token"),
    "a malformed token": ({"Authorization": "Bearer not.a.jwt"}, "", "AUTHENTICATION_REQUIRED", "malformed"),
    "another scheme": (
        {"Authorization": "Basic dXNlcjpwdw=="},
        "",
        "AUTHENTICATION_REQUIRED",
        "Bearer scheme",
    ),
    "an expired token": ({}, "access_token={expired}", "AUTHENTICATION_EXPIRED", "expired"),
    "another seller's filter": (as_seller("s-1"), "seller_id=s-2", "FORBIDDEN", "its own seller"),
    "a token twice": (
        as_seller("s-1"),
        "access_token={seller}",
        "AUTHENTICATION_REQUIRED",
        "send the token once",
    ),
    "two query tokens": (
        {},
        "access_token={seller}&access_token={seller}",
        "AUTHENTICATION_REQUIRED",
        "one access_token",
    ),
    "two filters": (ADMIN, "seller_id=s-1&seller_id=s-2", "VALIDATION_FAILED", "one seller_id"),
    "a bad seller id": (ADMIN, "seller_id=no%20spaces", "VALIDATION_FAILED", "letters, digits"),
}


@pytest.mark.parametrize(("headers", "query", "code", "detail"), REFUSALS.values(), ids=REFUSALS.keys())
def test_refused_connections_get_an_error_frame_and_close_1008(tmp_path, headers, query, code, detail):
    """A missing, bad or expired token, or a filter the token may not use: one error frame, then close 1008 with the reason."""
    query = query.format(expired=expired_token(), seller=token("seller", "u", "s-1"))
    with served(app_on(f"sqlite:///{tmp_path / 'store.db'}")) as http, events_of(http, headers, query) as ws:
        close_code, reason, frames = closing(ws)
    assert close_code == 1008
    assert reason.startswith(f"{code}: ")
    [error] = frames
    assert (error["type"], error["code"]) == ("error", code)
    assert detail in error["detail"]
    assert error["status"] in {401, 403, 422}


def test_a_connection_is_closed_1008_when_its_token_expires(tmp_path):
    """A connection lives only as long as its token: at expiry (no leeway here) the server closes it with 1008."""
    app = app_on(f"sqlite:///{tmp_path / 'store.db'}")
    app.state.authenticator = Authenticator(algorithm="HS256", key=SECRET, leeway=0)
    short = mint_token(SECRET, role="seller", subject="u", seller_id="s-1", ttl=2)
    with served(app) as http, events_of(http, {"Authorization": f"Bearer {short}"}) as ws:
        close_code, reason, frames = closing(ws, wait=WAIT)
    assert (close_code, reason) == (1008, "AUTHENTICATION_EXPIRED: the token has expired")
    assert all(frame["type"] == "ping" for frame in frames)


def test_an_idle_connection_is_pinged(tmp_path):
    """With nothing to send for the keepalive interval, the server sends {"type": "ping"} frames."""
    app = app_on(f"sqlite:///{tmp_path / 'store.db'}")
    app.state.events.keepalive = 0.05
    with served(app) as http, events_of(http, ADMIN) as ws:
        ws.send("hello")  # what a client sends is read and ignored
        pings = [next_event(ws, skip=()) for _ in range(3)]
    assert [p["type"] for p in pings] == ["ping"] * 3
    assert len({p["id"] for p in pings}) == 3


def test_a_consumer_that_falls_behind_is_closed_1013_and_the_others_go_on(tmp_path):
    """A burst bigger than a connection's queue closes it with 1013; a connection that follows one seller keeps going."""
    app = app_on(f"sqlite:///{tmp_path / 'store.db'}")
    app.state.events.queue_size = 3
    with served(app) as http:
        sellers = [f"s-{n}" for n in range(6)]
        for seller in sellers:
            put_seller(http, seller)
            assert http.post(
                f"{PREFIX}/sellers/{seller}/metrics", json={"metrics": GOLD_METRICS}, headers=SERVICE
            )
        with events_of(http, ADMIN) as everyone, events_of(http, as_seller("s-4")) as one:
            # One re-evaluation upgrades six sellers: six tier.changed events delivered at once.
            assert (
                http.post(f"{PREFIX}/tiers/reevaluate", json={}, headers=SERVICE).json()["data"]["changed"]
                == 6
            )
            close_code, reason, frames = closing(everyone)
            changed = next_event(one)
            assert (changed["type"], changed["seller_id"]) == ("tier.changed", "s-4")
            put_seller(http, "s-4", "silver")
            assert next_event(one)["type"] == "seller.updated"
    assert (close_code, reason) == (1013, "too slow: the connection's event queue is full")
    assert [f for f in frames if f["type"] != "ping"] == []


def test_stopping_the_server_closes_open_connections(tmp_path):
    """Shutting the service down closes the connections (uvicorn's 1012, or the bus's 1001) instead of hanging."""
    app = app_on(f"sqlite:///{tmp_path / 'store.db'}")
    with served(app) as http:
        ws = events_of(http, ADMIN).__enter__()
        assert app.state.events.connections == 1
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=WAIT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code in {1001, 1012}
    assert app.state.events.connections == 0


def test_the_bus_closes_its_connections_with_1001_when_it_stops():
    """EventBus.stop ends every subscriber with 1001 (going away), and get() then returns nothing."""

    async def scenario() -> tuple[int | None, str, list[Event]]:
        bus = EventBus()
        subscriber = bus.subscribe(None)
        await bus.stop()
        return subscriber.close_code, subscriber.close_reason, await subscriber.get()

    assert asyncio.run(scenario()) == (1001, "the service is shutting down", [])


def test_events_are_frozen_checked_values():
    """Events copy their data behind a read-only view and refuse inconsistent shapes; from_json inverts to_json."""
    data = {"version": "v2", "previous": "v1"}
    event = Event("policy.activated", None, data)
    data["version"] = "changed later"
    assert event.to_json()["version"] == "v2"
    with pytest.raises(TypeError):
        event.data["version"] = "x"  # type: ignore[index]
    assert Event.from_json(json.loads(json.dumps(event.to_json()))) == event
    with pytest.raises(ValueError, match="unknown event type"):
        Event("seller.deleted", "s-1")
    with pytest.raises(ValueError, match="needs seller_id"):
        Event("tier.changed")
    with pytest.raises(ValueError, match="has no seller_id"):
        Event("policy.activated", "s-1")
    with pytest.raises(ValueError, match="cannot set seller_id"):
        Event("tier.changed", "s-1", {"seller_id": "s-2"})
    for bad in (
        {"type": "resync", "id": "1", "at": "now"},
        {"type": "tier.changed", "seller_id": 7, "id": "1", "at": "x"},
        {"type": "tier.changed", "seller_id": "s"},
    ):
        with pytest.raises(ValueError):
            Event.from_json(bad)
    assert policy_activated("v2", None).concerns("s-1")
    assert not Event("seller.updated", "s-1").concerns("s-2")


def test_a_subscriber_takes_events_from_other_threads_in_order():
    """Events offered from a thread reach the subscriber's loop in order; its filter keeps other sellers out."""

    async def scenario() -> list[str]:
        bus = EventBus()
        subscriber: Subscriber = bus.subscribe("s-1")
        events = [Event("seller.updated", s, {"n": n}) for n, s in enumerate(["s-1", "s-2", "s-1"])]
        thread = threading.Thread(target=bus.publish, args=events)
        thread.start()
        got = await asyncio.wait_for(subscriber.get(), WAIT)
        while len(got) < 2:
            got += await asyncio.wait_for(subscriber.get(), WAIT)
        thread.join()
        return [f"{e.seller_id}:{e.data['n']}" for e in got]

    assert asyncio.run(scenario()) == ["s-1:0", "s-1:2"]


# ----------------------------------------------------------------------------- replicas through Redis


@pytest.mark.redis
def test_a_change_on_one_replica_reaches_clients_and_the_cache_of_another(database_url, own_redis_server):
    """Two replicas share a database and Redis: an override made on A reaches B's clients once and drops B's cached entitlements."""
    if not database_url.startswith("sqlite"):
        with Database.from_url(database_url) as database:
            database.migrate()
    first = app_on(database_url, redis_url=own_redis_server.url)
    second = app_on(database_url, redis_url=own_redis_server.url)
    assert second.state.cache.ttl == 30  # the default: only an invalidation explains a fresh answer below
    with served(first) as a, served(second) as b:
        assert first.state.events.wait_subscribed(WAIT)
        assert second.state.events.wait_subscribed(WAIT)
        put_seller(a, "s-1", "gold")
        entitlements = f"{PREFIX}/sellers/s-1/entitlements"
        before = b.get(entitlements, headers=SERVICE).json()["data"]["features"]["support.dedicated_manager"]
        assert before["allowed"] is False
        hits = second.state.cache.hits
        assert b.get(entitlements, headers=SERVICE).status_code == 200
        assert second.state.cache.hits == hits + 1  # B answers from its cache now

        with events_of(b, as_seller("s-1")) as on_b, events_of(a, ADMIN) as on_a:
            created = a.post(f"{PREFIX}/sellers/s-1/overrides", json=grant(), headers=ADMIN).json()["data"]
            heard_b = next_event(on_b)
            assert (heard_b["type"], heard_b["override_id"]) == ("override.created", created["id"])
            # The publisher's own replica hears it through Redis too, once.
            heard_a = next_event(on_a)
            assert heard_a == heard_b
            after = b.get(entitlements, headers=SERVICE).json()["data"]["features"][
                "support.dedicated_manager"
            ]
            assert (after["allowed"], after["reason"]) == (True, "OVERRIDE")

            a.delete(f"{PREFIX}/sellers/s-1/overrides/{created['id']}", headers=ADMIN)
            assert next_event(on_b)["type"] == "override.deleted"  # not a second override.created
            assert next_event(on_a)["type"] == "override.deleted"

            # An activation on A: each replica tells its own clients what it now serves, once.
            uploaded = a.post(
                f"{PREFIX}/policy/versions", json={"files": V2, "activate": True}, headers=ADMIN
            )
            assert uploaded.status_code == 201, uploaded.text
            for ws in (on_b, on_a):
                activated = next_event(ws)
                assert (activated["type"], activated["version"]) == ("policy.activated", version_of(V2))
            put_seller(a, "s-1", "gold")  # a marker: nothing else may come before it
            assert next_event(on_b)["type"] == "seller.updated"
            assert next_event(on_a)["type"] == "seller.updated"


@pytest.mark.redis
def test_without_redis_events_stay_local_and_a_reconnection_sends_resync(tmp_path, own_redis_server):
    """Redis stops: local events still flow; Redis is back: the listener resubscribes, clients get resync, the cache is dropped."""
    app = app_on(f"sqlite:///{tmp_path / 'store.db'}", redis_url=own_redis_server.url)
    app.state.events.backoff = fast
    with served(app) as http, events_of(http, ADMIN) as ws:
        assert app.state.events.wait_subscribed(WAIT)
        put_seller(http, "s-1")
        assert next_event(ws)["type"] == "seller.updated"  # through Redis
        assert http.get(f"{PREFIX}/sellers/s-1/entitlements", headers=SERVICE).status_code == 200
        assert len(app.state.cache) == 1

        own_redis_server.stop()
        put_seller(http, "s-2")
        local = next_event(ws)
        assert (local["type"], local["seller_id"]) == ("seller.updated", "s-2")  # on this replica alone
        assert http.get(f"{PREFIX}/sellers/s-1/entitlements", headers=SERVICE).status_code == 200

        own_redis_server.start()
        resync = next_event(ws)
        assert resync["type"] == "resync"
        assert "seller_id" not in resync
        assert app.state.events.wait_subscribed(WAIT)
        assert len(app.state.cache) == 0

        put_seller(http, "s-3")
        assert next_event(ws)["seller_id"] == "s-3"  # through Redis again
        put_seller(http, "s-4")
        assert next_event(ws)["seller_id"] == "s-4"  # s-3's event came once, not twice


# ----------------------------------------------------------------------------- the bus by hand


def test_the_bus_delivers_local_events_locally_and_survives_a_failing_listener(caplog):
    """Resync and policy.activated never go to Redis; a listener that raises is logged and the others still run."""
    seen: list[str] = []

    def broken(_event: Event) -> None:
        raise RuntimeError("boom")

    async def scenario() -> list[Event]:
        bus = EventBus(keepalive=1)
        bus.add_listener(broken)
        bus.add_listener(lambda event: seen.append(event.type))
        subscriber = bus.subscribe("s-1")
        bus.publish()  # nothing to do
        bus.publish(Event("resync"), Event("seller.updated", "s-2"), Event("seller.updated", "s-1"))
        return await asyncio.wait_for(subscriber.get(), WAIT)

    got = asyncio.run(scenario())
    assert [(e.type, e.seller_id) for e in got] == [("resync", None), ("seller.updated", "s-1")]
    assert seen == ["resync", "seller.updated", "seller.updated"]
    assert "an event listener failed on resync" in caplog.text
    with pytest.raises(ValueError, match="queue_size"):
        EventBus(queue_size=0)


def test_a_subscriber_that_ended_takes_nothing_more():
    """After a 1013 the subscriber's backlog is gone and later events are not queued."""

    async def scenario() -> tuple[int | None, list[Event]]:
        subscriber = EventBus(queue_size=1).subscribe(None)
        subscriber.offer([Event("seller.updated", "s-1"), Event("seller.updated", "s-2")])
        subscriber.offer([Event("seller.updated", "s-3")])
        return subscriber.close_code, await subscriber.get()

    assert asyncio.run(scenario()) == (1013, [])


def test_announce_never_fails_the_request(tmp_path, caplog):
    """A failure while announcing a stored change is logged, not raised into the route."""
    from tierpolicy.service._events import announce  # noqa: PLC0415  only this test

    app = app_on(f"sqlite:///{tmp_path / 'store.db'}")
    app.state.cache = object()  # no apply(): announcing breaks
    announce(app, Event("seller.updated", "s-1"))
    assert "announcing seller.updated failed" in caplog.text


@pytest.mark.redis
def test_a_bus_that_is_not_listening_still_delivers_locally_once(redis_server, redis_prefix):
    """With Redis but no listener (no lifespan), an event published is delivered here directly, once."""
    from tierpolicy.adapters.redis import EventChannel  # noqa: PLC0415  only the Redis tests

    async def scenario() -> list[Event]:
        bus = EventBus(EventChannel.from_url(redis_server.url, channel=f"{redis_prefix}events"))
        subscriber = bus.subscribe(None)
        await asyncio.to_thread(bus.publish, Event("seller.updated", "s-1"))
        got = await asyncio.wait_for(subscriber.get(), WAIT)
        await bus.stop()
        return got

    assert [e.seller_id for e in asyncio.run(scenario())] == ["s-1"]


@pytest.mark.redis
def test_the_listener_skips_messages_that_are_not_events(redis_server, redis_prefix, caplog):
    """Someone else's message on the channel is logged and skipped; the next event arrives."""
    import redis  # noqa: PLC0415  only the Redis tests

    from tierpolicy.adapters.redis import EventChannel  # noqa: PLC0415  as above

    name = f"{redis_prefix}events"

    async def scenario() -> list[Event]:
        bus = EventBus(EventChannel.from_url(redis_server.url, channel=name), backoff=fast)
        await bus.start()
        assert await asyncio.to_thread(bus.wait_subscribed, WAIT)
        assert bus.subscribed
        subscriber = bus.subscribe(None)
        raw = redis.Redis.from_url(redis_server.url)
        raw.publish(name, json.dumps({"type": "resync", "id": "x", "at": "now"}))  # only a replica's own
        raw.close()
        await asyncio.to_thread(bus.publish, Event("seller.updated", "s-1"))
        got = await asyncio.wait_for(subscriber.get(), WAIT)
        await bus.stop()
        assert not bus.subscribed
        return got

    assert [(e.type, e.seller_id) for e in asyncio.run(scenario())] == [("seller.updated", "s-1")]
    assert "a message that is no event was skipped" in caplog.text


@pytest.mark.redis
def test_a_bus_on_a_cluster_client_keeps_its_events_local(redis_server, caplog):
    """redis-py's asyncio cluster client has no pub/sub: the bus says so and delivers on this replica."""
    import redis.asyncio.cluster  # noqa: PLC0415  only the Redis tests

    from tierpolicy.adapters.redis import EventChannel  # noqa: PLC0415  as above

    async def scenario() -> tuple[object, list[Event]]:
        cluster = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=redis_server.port)
        bus = EventBus(EventChannel(async_client=cluster))
        await bus.start()
        for _ in range(100):
            if bus.channel is None:
                break
            await asyncio.sleep(0.01)
        subscriber = bus.subscribe(None)
        bus.publish(Event("seller.updated", "s-1"))
        got = await asyncio.wait_for(subscriber.get(), WAIT)
        await bus.stop()
        await cluster.aclose()
        return bus.channel, got

    channel, got = asyncio.run(scenario())
    assert channel is None
    assert [e.seller_id for e in got] == ["s-1"]
    assert "events stay on this replica" in caplog.text
