"""Seller and policy events: an event bus, and the WebSocket that streams it to clients.

Routes that change something announce it as an :class:`Event` (``tier.changed``,
``seller.updated``, ``metrics.recorded``, ``override.created``, ``override.deleted``);
a replica that starts serving another policy version announces ``policy.activated``.
A seller-scoped event carries ``seller_id``; a policy event has none and goes to every
client.

The :class:`EventBus` delivers events to this replica's listeners (the entitlement
cache) and WebSocket connections. Without Redis it delivers what is published directly.
With Redis, :meth:`EventBus.publish` sends the events on the Redis channel and the
bus's listener task delivers what it hears, its own replica's events included: each
event reaches each connection once. When Redis cannot take a publish, the event is
delivered on this replica only. Redis pub/sub keeps nothing for a listener that was
away, so whenever the listener subscribes again after losing Redis, the bus sends
every connection a ``resync`` event (re-read what you show) and its listeners drop
what they cached. ``policy.activated`` never crosses Redis: every replica announces,
to its own clients, the version it now serves (replicas hear of activations through
the policy channel).

A connection has a bounded queue: a client that does not keep up is disconnected with
close code 1013 (try again later), rather than making the service hold its backlog.

The WebSocket, ``/api/marketplace/seller/ws``, takes the service's bearer tokens in the
``Authorization`` header, or (since browsers cannot set headers on a WebSocket) in an
``access_token`` query parameter, which ends up in access logs: prefer the header. A
seller sees its own seller's events (and policy events); admin and service tokens see
every seller's, or one seller's with ``?seller_id=``. A refused connection is accepted,
sent one ``{"type": "error", ...}`` frame and closed with code 1008 (policy violation)
and a reason. The server sends ``{"type": "ping"}`` when it has had nothing to send for
``EventBus.keepalive`` seconds, and closes the connection with 1008 when its token
expires.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import re
import threading
import time
import types
import uuid
from typing import TYPE_CHECKING, Any, Final

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from tierpolicy.engine._exceptions import ConditionError, StoreError
from tierpolicy.engine._tiers import iso

from ._auth import Principal, authenticator_of
from ._problems import ServiceError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from fastapi import FastAPI

    from tierpolicy.adapters.redis import EventChannel
    from tierpolicy.adapters.sqlalchemy import OverrideRecord, TierChange

    from ._limits import ServiceRateLimits

logger = logging.getLogger("tierpolicy.service")

SELLER_EVENTS: Final = frozenset(
    {
        "tier.changed",
        "tier.downgrade_pending",
        "tier.downgrade_cancelled",
        "seller.updated",
        "metrics.recorded",
        "override.created",
        "override.deleted",
    }
)
"""Event types about one seller: they carry ``seller_id``."""

POLICY_EVENTS: Final = frozenset({"policy.activated"})
"""Event types every client gets."""

LOCAL_EVENTS: Final = frozenset({"resync", "ping"})
"""Event types a replica makes for its own connections, never sent through Redis."""

POLICY_VIOLATION: Final = 1008
TRY_AGAIN_LATER: Final = 1013
INTERNAL_ERROR: Final = 1011
GOING_AWAY: Final = 1001

_RESERVED: Final = frozenset({"type", "id", "at", "seller_id"})
_SELLER_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MAX_REASON_BYTES: Final = 123  # RFC 6455 section 5.5: a control frame's payload is at most 125 bytes


def _now() -> str:
    return iso(dt.datetime.now(dt.UTC))


# --------------------------------------------------------------------------- events


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One event, as clients receive it (see :meth:`to_json`).

    Attributes:
        type: ``tier.changed``, ``policy.activated`` ... (see the module).
        seller_id: The seller it is about; ``None`` for an event every client gets.
        data: The event's own members (``from``, ``to``, ``version`` ...), read-only.
        at: When it happened (RFC 3339, UTC).
        id: A unique id (32 hex digits), so a client can tell a repeat.
    """

    type: str
    seller_id: str | None = None
    data: Mapping[str, object] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))
    at: str = dataclasses.field(default_factory=_now)
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        known = SELLER_EVENTS | POLICY_EVENTS | LOCAL_EVENTS
        if self.type not in known:
            raise ValueError(f"unknown event type {self.type!r}")
        if (self.type in SELLER_EVENTS) != (self.seller_id is not None):
            raise ValueError(
                f"a {self.type} event {'needs' if self.type in SELLER_EVENTS else 'has no'} seller_id"
            )
        clash = _RESERVED & self.data.keys()
        if clash:
            raise ValueError(f"an event's data cannot set {', '.join(sorted(clash))}")
        # A copy behind a read-only view: whoever built the event cannot change it later.
        object.__setattr__(self, "data", types.MappingProxyType(dict(self.data)))

    def to_json(self) -> dict[str, object]:
        """The event as a JSON object: ``type``, ``id``, ``at``, ``seller_id`` when scoped, then its data."""
        out: dict[str, object] = {"type": self.type, "id": self.id, "at": self.at}
        if self.seller_id is not None:
            out["seller_id"] = self.seller_id
        out.update(self.data)
        return out

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Event:
        """The event a replica published (the inverse of :meth:`to_json`).

        Raises:
            ValueError: It is not an event another replica may send.
        """
        kind, event_id, at, seller_id = (value.get(k) for k in ("type", "id", "at", "seller_id"))
        if not isinstance(kind, str) or kind not in SELLER_EVENTS | POLICY_EVENTS:
            raise ValueError(f"not an event replicas exchange: type {kind!r}")
        if not (isinstance(event_id, str) and isinstance(at, str)):
            raise ValueError("an event needs a string id and at")  # noqa: TRY004  every malformed message is a ValueError
        if seller_id is not None and not (isinstance(seller_id, str) and _SELLER_ID.fullmatch(seller_id)):
            raise ValueError("an event's seller_id is a seller id")
        data = {k: v for k, v in value.items() if k not in _RESERVED}
        return cls(kind, seller_id, data, at, event_id)

    def concerns(self, seller_id: str | None) -> bool:
        """Whether a connection following ``seller_id`` (``None``: every seller) gets this event."""
        return self.seller_id is None or seller_id is None or self.seller_id == seller_id


def tier_changed(
    seller_id: str, *, from_tier: str | None, to_tier: str, reason: str, at: dt.datetime
) -> Event:
    """``tier.changed``: a seller moved from one tier to another, at ``at``, for ``reason``."""
    return Event("tier.changed", seller_id, {"from": from_tier, "to": to_tier, "reason": reason}, iso(at))


def tier_change(change: TierChange) -> Event:
    """``tier.changed`` for an entry of the tier history."""
    return tier_changed(
        change.seller_id,
        from_tier=change.from_tier,
        to_tier=change.to_tier,
        reason=change.reason,
        at=change.at,
    )


def downgrade_pending(
    seller_id: str, *, tier: str, since: dt.datetime, effective_at: dt.datetime | None
) -> Event:
    """``tier.downgrade_pending``: the seller's metrics qualify only for a lower tier; the grace period started."""
    return Event(
        "tier.downgrade_pending",
        seller_id,
        {
            "tier": tier,
            "since": iso(since),
            "effective_at": None if effective_at is None else iso(effective_at),
        },
    )


def downgrade_cancelled(seller_id: str, *, tier: str) -> Event:
    """``tier.downgrade_cancelled``: the seller's metrics qualify for its tier again; the grace period ended."""
    return Event("tier.downgrade_cancelled", seller_id, {"tier": tier})


def seller_updated(seller_id: str, *, tier: str, previous_tier: str | None) -> Event:
    """``seller.updated``: an admin created or replaced the seller (``previous_tier`` null when new)."""
    return Event("seller.updated", seller_id, {"tier": tier, "previous_tier": previous_tier})


def metrics_recorded(seller_id: str, *, taken_at: dt.datetime) -> Event:
    """``metrics.recorded``: a metrics snapshot of the seller was stored."""
    return Event("metrics.recorded", seller_id, {"taken_at": iso(taken_at)})


def override_event(kind: str, record: OverrideRecord) -> Event:
    """``override.created`` or ``override.deleted`` (``kind``) for an override of the store."""
    return Event(
        f"override.{kind}",
        record.seller_id,
        {"override_id": record.id, "kind": record.kind, "target": record.target},
    )


def policy_activated(version: str, previous: str | None) -> Event:
    """``policy.activated``: the replica now serves ``version`` (``previous`` is what it served before)."""
    return Event("policy.activated", None, {"version": version, "previous": previous})


# --------------------------------------------------------------------------- connections


class Subscriber:
    """One connection's place on the bus: a bounded queue of the events it follows.

    Created on the event loop that serves the connection; events offered from any
    thread are handed to that loop.

    Args:
        seller_id: The seller whose events it gets (``None``: every seller's).
        limit: How many undelivered events it may hold; one more ends it (1013).
    """

    def __init__(self, seller_id: str | None, limit: int) -> None:
        self.seller_id = seller_id
        self.limit = limit
        self.loop = asyncio.get_running_loop()
        self.close_code: int | None = None
        """Why the bus ended it: 1013 (too slow) or 1001 (shutting down); ``None`` while it runs."""
        self.close_reason = ""
        self.ended = asyncio.Event()
        self._items: collections.deque[Event] = collections.deque()
        self._wake = asyncio.Event()

    def offer(self, events: Iterable[Event]) -> None:
        """Queue the events it follows (on its loop); past the limit, end it with 1013."""
        for event in events:
            if self.close_code is not None:
                return
            if not event.concerns(self.seller_id):
                continue
            if len(self._items) >= self.limit:
                self._items.clear()  # the connection is going: its backlog is no use to anyone
                self.end(TRY_AGAIN_LATER, "too slow: the connection's event queue is full")
                return
            self._items.append(event)
            self._wake.set()

    def end(self, code: int, reason: str) -> None:
        """End it (on its loop): the connection is closed with ``code``."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.ended.set()
            self._wake.set()

    async def get(self) -> list[Event]:
        """Every queued event, waiting for one if there is none (an empty list once ended)."""
        while not self._items and self.close_code is None:
            self._wake.clear()
            await self._wake.wait()
        items = list(self._items)
        self._items.clear()
        return items

    def call(self, method: Callable[..., object], *args: object) -> None:
        """Run ``method(*args)`` on the subscriber's loop, from whatever thread this is."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            method(*args)
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop: its connections are gone
                self.loop.call_soon_threadsafe(method, *args)


# --------------------------------------------------------------------------- the bus


class EventBus:
    """Delivers events to this replica's listeners and connections, across replicas through Redis.

    Args:
        channel: The Redis event channel; ``None`` for one replica (in memory).
        queue_size: How many events a connection may have waiting before it is closed
            with 1013.
        keepalive: Seconds of silence after which a connection is sent ``{"type": "ping"}``.
        backoff: Seconds to wait before reconnecting to Redis after ``n`` failures in a row.
        policy_version: The policy version served at startup (the ``previous`` of the
            first ``policy.activated``).
    """

    def __init__(
        self,
        channel: EventChannel | None = None,
        *,
        queue_size: int = 256,
        keepalive: float = 25.0,
        backoff: Callable[[int], float] | None = None,
        policy_version: str | None = None,
    ) -> None:
        if queue_size < 1 or keepalive <= 0:
            raise ValueError("queue_size must be at least 1 and keepalive positive")
        self.channel = channel
        self.queue_size = queue_size
        self.keepalive = keepalive
        self.backoff = backoff
        self._serving = policy_version
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._listeners: list[Callable[[Event], object]] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = threading.Event()

    # ------------------------------------------------------------------ subscribers and listeners

    def add_listener(self, listener: Callable[[Event], object]) -> None:
        """Call ``listener(event)`` for every event delivered on this replica (from any thread)."""
        self._listeners.append(listener)

    def subscribe(self, seller_id: str | None) -> Subscriber:
        """A new connection's subscriber (call it on the connection's event loop)."""
        subscriber = Subscriber(seller_id, self.queue_size)
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a connection that is gone."""
        with self._lock:
            self._subscribers.discard(subscriber)

    @property
    def connections(self) -> int:
        """How many connections are subscribed on this replica."""
        with self._lock:
            return len(self._subscribers)

    # ------------------------------------------------------------------ publishing

    def deliver(self, *events: Event) -> None:
        """Deliver ``events`` on this replica only: to its listeners, then its connections."""
        for event in events:
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:
                    logger.exception("an event listener failed on %s", event.type)
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.call(subscriber.offer, events)

    def publish(self, *events: Event) -> None:
        """Publish ``events`` to every replica (this one included); call it from any thread.

        With Redis, a publish Redis cannot take is delivered on this replica only (the
        others send their clients ``resync`` once they hear Redis again).
        """
        if not events:
            return
        local = [e for e in events if e.type in LOCAL_EVENTS or e.type in POLICY_EVENTS]
        shared = [e for e in events if e.type in SELLER_EVENTS]
        if local:
            self.deliver(*local)
        if not shared:
            return
        if self.channel is None:
            self.deliver(*shared)
            return
        try:
            self.channel.publish(*(e.to_json() for e in shared))
        except StoreError as exc:
            logger.warning("events not sent through Redis, delivered on this replica only: %s", exc)
            self.deliver(*shared)
            return
        if self._task is None or self._task.done():
            # Not listening (no lifespan ran, or the listener gave up): nothing here hears Redis.
            self.deliver(*shared)

    def policy_served(self, version: str) -> None:
        """Announce, on this replica, that it now serves policy ``version``."""
        previous, self._serving = self._serving, version
        if previous != version:
            self.deliver(policy_activated(version, previous))

    # ------------------------------------------------------------------ the Redis listener

    @property
    def subscribed(self) -> bool:
        """Whether the Redis listener is subscribed right now (always ``False`` in memory)."""
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait (from any thread) until the Redis listener is subscribed; whether it is."""
        return self._subscribed.wait(timeout)

    async def start(self) -> None:
        """Start listening to Redis (no-op in memory); call it in the application's event loop."""
        if self.channel is not None and self._task is None:
            self._task = asyncio.create_task(self._listen(), name="tierpolicy-events")

    async def stop(self) -> None:
        """Stop listening, and close every connection with 1001 (going away)."""
        task, self._task = self._task, None
        if task is not None:
            # redis-py can swallow a cancellation that lands while a subscription is being
            # set up, and then block on its next read: cancel until the task is really gone.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._subscribed.clear()
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.call(subscriber.end, GOING_AWAY, "the service is shutting down")
        if self.channel is not None:
            await self.channel.aclose()
            self.channel.close()

    def _lost(self, error: BaseException) -> None:
        if isinstance(error, StoreError):
            self._subscribed.clear()
        logger.warning("event channel: %s: %s", type(error).__name__, error)

    async def _listen(self) -> None:
        from tierpolicy.adapters.redis import Subscribed  # noqa: PLC0415  the redis extra, only with Redis

        channel = self.channel
        assert channel is not None  # noqa: S101  started only with a channel
        options: dict[str, Any] = {"on_error": self._lost}
        if self.backoff is not None:
            options["backoff"] = self.backoff
        heard_anything = False
        try:
            async with contextlib.aclosing(channel.listen(**options)) as heard:
                async for item in heard:
                    heard_anything = True
                    if isinstance(item, Subscribed):
                        self._subscribed.set()
                        if not item.first:
                            # Whatever was published while we were away is lost: start over.
                            self.deliver(Event("resync"))
                        continue
                    try:
                        event = Event.from_json(item)
                    except ValueError as exc:
                        logger.warning("event channel: a message that is no event was skipped: %s", exc)
                        continue
                    self.deliver(event)
        except TypeError as exc:
            if heard_anything:
                raise
            # A cluster client: redis-py has no asyncio pub/sub for it.
            logger.error("events stay on this replica: %s", exc)  # noqa: TRY400  a setup problem, not a crash
            self.channel = None
        except Exception:
            # publish() sees the task is done and delivers on this replica from now on.
            logger.exception("the event listener stopped: events stay on this replica")
        finally:
            self._subscribed.clear()


# --------------------------------------------------------------------------- announcing from routes


def announce(app: FastAPI, *events: Event) -> None:
    """After a change was stored: drop what this replica cached about it, and publish ``events``.

    Never raises: the change is stored already, and the caller's answer must say so.
    """
    try:
        cache = getattr(app.state, "cache", None)
        if cache is not None:
            for event in events:
                cache.apply(event)
        bus: EventBus | None = getattr(app.state, "events", None)
        if bus is not None:
            bus.publish(*events)
    except Exception:
        logger.exception("announcing %s failed", ", ".join(e.type for e in events))


# --------------------------------------------------------------------------- the WebSocket


class _Refused(Exception):  # noqa: N818  a control-flow signal, not an error of the library
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _admit(websocket: WebSocket) -> tuple[Principal, str | None]:
    """The connection's principal and the seller it follows (``None``: every seller).

    Raises:
        _Refused: The token is missing or refused, or the filter is not allowed.
    """
    headers = websocket.headers.getlist("authorization")
    query = websocket.query_params.getlist("access_token")
    if headers and query:
        raise _Refused(
            401, "AUTHENTICATION_REQUIRED", "send the token once: in the header or in access_token"
        )
    if len(query) > 1:
        raise _Refused(401, "AUTHENTICATION_REQUIRED", "send one access_token, not several")
    try:
        principal = authenticator_of(websocket).authenticate(headers or [f"Bearer {t}" for t in query])
    except ServiceError as exc:
        raise _Refused(exc.status or 401, exc.code, exc.detail or exc.code) from None
    wanted = websocket.query_params.getlist("seller_id")
    if len(wanted) > 1:
        raise _Refused(422, "VALIDATION_FAILED", "give one seller_id, not several")
    if wanted and not _SELLER_ID.fullmatch(wanted[0]):
        raise _Refused(422, "VALIDATION_FAILED", "seller_id is 1 to 128 letters, digits and ._:-")
    if principal.role == "seller":
        if wanted and wanted[0] != principal.seller_id:
            raise _Refused(403, "FORBIDDEN", "a seller token follows only its own seller's events")
        return principal, principal.seller_id
    return principal, wanted[0] if wanted else None


async def _rate_limited(websocket: WebSocket, principal: Principal | None) -> int | None:
    """Check the handshake against the service's rate limits; refuse it (1013) when one denies.

    Returns the close code sent, or ``None`` when the connection may go on.
    """
    limits: ServiceRateLimits = websocket.app.state.rate_limits
    try:
        result = await limits.check_connection(websocket, principal)
    except ConditionError:
        logger.exception("rate limits of the event WebSocket not applied, a key failed")
        await _refuse(
            websocket, _Refused(500, "INTERNAL", "the rate limits could not be applied"), INTERNAL_ERROR
        )
        return INTERNAL_ERROR
    if result.allowed:
        return None
    retry_after = result.headers().get("Retry-After", "1")
    deciding = result.deciding
    refusal = _Refused(
        429,
        "RATE_LIMITED",
        f"rate limit {deciding.limit if deciding else ''!r} refused the connection; retry in {retry_after} s",
    )
    await _refuse(websocket, refusal, TRY_AGAIN_LATER)
    return TRY_AGAIN_LATER


async def _refuse(websocket: WebSocket, refusal: _Refused, code: int = POLICY_VIOLATION) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_text(
            json.dumps(
                {"type": "error", "status": refusal.status, "code": refusal.code, "detail": refusal.detail}
            )
        )
        await websocket.close(code, _reason(f"{refusal.code}: {refusal.detail}"))


def _reason(text: str) -> str:
    """``text`` cut to what a close frame carries."""
    raw = text.encode("utf-8")
    return (
        text
        if len(raw) <= _MAX_REASON_BYTES
        else raw[: _MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."
    )


async def _send(
    websocket: WebSocket, bus: EventBus, subscriber: Subscriber, expires: float
) -> tuple[int, str] | None:
    """Send events and pings until the token expires (its close) or the client is gone (``None``)."""
    try:
        while True:
            left = expires - time.time()
            if left <= 0:
                return POLICY_VIOLATION, "AUTHENTICATION_EXPIRED: the token has expired"
            try:
                events = await asyncio.wait_for(subscriber.get(), timeout=min(bus.keepalive, left))
                if subscriber.close_code is not None:
                    return None  # the bus ended it: the caller closes with its code
            except TimeoutError:
                if expires - time.time() <= 0:
                    continue
                events = [Event("ping")]
            for event in events:
                await websocket.send_text(json.dumps(event.to_json(), separators=(",", ":")))
    except (WebSocketDisconnect, RuntimeError, OSError):
        return None


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass


def router() -> APIRouter:
    """The event WebSocket, under the service prefix."""
    from ._app import PREFIX  # noqa: PLC0415  _app imports this module

    api = APIRouter(prefix=PREFIX)

    @api.websocket("/ws", name="events")
    async def events(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            principal, seller_id = _admit(websocket)
        except _Refused as refusal:
            # Refused handshakes count against the caller's address, as 401s do.
            if await _rate_limited(websocket, None) is None:
                await _refuse(websocket, refusal)
            return
        if await _rate_limited(websocket, principal) is not None:
            return
        bus: EventBus = websocket.app.state.events
        subscriber = bus.subscribe(seller_id)
        expires = principal.expires_at.timestamp() + authenticator_of(websocket).leeway
        sender = asyncio.create_task(_send(websocket, bus, subscriber, expires))
        tasks = [sender, asyncio.create_task(_drain(websocket)), asyncio.create_task(subscriber.ended.wait())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            bus.unsubscribe(subscriber)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        close: tuple[int, str] | None = None
        if subscriber.close_code is not None:
            close = subscriber.close_code, subscriber.close_reason
        elif sender.done() and not sender.cancelled():
            close = sender.result()
        if close is not None:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await websocket.close(close[0], _reason(close[1]))

    return api


__all__ = [
    "LOCAL_EVENTS",
    "POLICY_EVENTS",
    "SELLER_EVENTS",
    "Event",
    "EventBus",
    "Subscriber",
    "announce",
    "downgrade_cancelled",
    "downgrade_pending",
    "metrics_recorded",
    "override_event",
    "policy_activated",
    "router",
    "seller_updated",
    "tier_change",
    "tier_changed",
]
