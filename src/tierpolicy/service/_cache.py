"""The seller cache: entitlements answered without the database, and sellers' tiers for rate limits.

``GET /sellers/{id}/entitlements`` reads the seller, its latest metrics and its
overrides, and asks the engine; the answer is kept for ``SELLER_CACHE_TTL`` seconds
(0 turns the cache off) under the seller's id *and* the policy version that computed
it, so a replica that starts serving another version misses at once. It is dropped
sooner when something it depends on changes:

- on the replica that made the change, before the route answers (:func:`announce
  <tierpolicy.service._events.announce>`), so a caller reads its own writes at once;
- on every other replica when the change's event arrives through the event bus (a
  seller-scoped event drops that seller; ``resync`` and ``policy.activated`` drop
  everything);
- when an override of the seller starts or expires (an entry never outlives the next
  such moment).

A lookup that races with a change cannot put a stale answer back: an answer computed
while something was invalidated is not stored. The cache holds at most ``max_entries``
entries and drops the least recently used. Time-dependent policy conditions (a
seller's age, say) are as fresh as the TTL.

The same cache answers :meth:`SellerCache.tier_of`, the stored tier of a seller (or
``None`` for an unknown one), for rate-limiting seller tokens by tier.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
from typing import TYPE_CHECKING, Final

from starlette.concurrency import run_in_threadpool

from tierpolicy.adapters.sqlalchemy import NotFoundError
from tierpolicy.engine._exceptions import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Mapping

    from tierpolicy.adapters.sqlalchemy import Database

    from ._events import Event

logger = logging.getLogger("tierpolicy.service")

MAX_ENTRIES: Final = 10_000
"""Entries kept by default (entitlements and tiers together)."""

_MISSING: Final = object()


class SellerCache:
    """Entitlements by seller and policy version, and tiers by seller, for a limited time.

    Thread-safe: routes run in the thread pool, the event bus calls :meth:`apply` from
    wherever an event is delivered.

    Args:
        database: The store tiers are read from.
        ttl: Seconds an entry lives; 0 turns the cache off.
        max_entries: How many entries are kept (the least recently used go first).
        clock: Seconds on a clock that never goes back (tests pin it).

    Attributes:
        hits: Lookups answered from the cache.
        misses: Lookups that were not.
    """

    def __init__(
        self,
        database: Database | None,
        *,
        ttl: float,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0 or max_entries < 1:
            raise ValueError("ttl must not be negative and max_entries must be at least 1")
        self.database = database
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[Hashable, tuple[float, object]] = collections.OrderedDict()
        self._by_seller: dict[str, set[Hashable]] = {}
        self._generation = 0

    @property
    def enabled(self) -> bool:
        """Whether anything is cached at all (``ttl`` above 0)."""
        return self.ttl > 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # ------------------------------------------------------------------ the store itself

    def ticket(self) -> int:
        """Take before reading what will be cached; :meth:`put` refuses it if anything was invalidated since."""
        with self._lock:
            return self._generation

    def _get(self, seller_id: str, key: Hashable) -> object:
        if not self.enabled:
            return _MISSING
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return _MISSING
            deadline, value = entry
            if self.clock() >= deadline:
                self._drop(seller_id, key)
                self.misses += 1
                return _MISSING
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def _put(self, seller_id: str, key: Hashable, value: object, ticket: int, max_age: float | None) -> bool:
        lifetime = self.ttl if max_age is None else min(self.ttl, max_age)
        if lifetime <= 0:
            return False
        with self._lock:
            if ticket != self._generation:
                return False  # something changed while the value was read: it may be stale
            self._entries[key] = (self.clock() + lifetime, value)
            self._entries.move_to_end(key)
            self._by_seller.setdefault(seller_id, set()).add(key)
            while len(self._entries) > self.max_entries:
                old, _ = self._entries.popitem(last=False)
                self._unindex(old)
            return True

    def _drop(self, seller_id: str, key: Hashable) -> None:
        self._entries.pop(key, None)
        keys = self._by_seller.get(seller_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_seller[seller_id]

    def _unindex(self, key: Hashable) -> None:
        seller_id = key[1]  # type: ignore[index]  # every key is (kind, seller_id, ...)
        keys = self._by_seller.get(seller_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_seller[seller_id]

    # ------------------------------------------------------------------ entitlements

    def entitlements(self, seller_id: str, version: str) -> Mapping[str, object] | None:
        """The cached entitlements of ``seller_id`` under policy ``version``, or ``None``."""
        value = self._get(seller_id, ("entitlements", seller_id, version))
        return None if value is _MISSING else value  # type: ignore[return-value]  # only mappings are put

    def put_entitlements(
        self,
        seller_id: str,
        version: str,
        value: Mapping[str, object],
        *,
        ticket: int,
        max_age: float | None = None,
    ) -> bool:
        """Keep ``value`` (treated as read-only from now on); whether it was kept.

        Args:
            seller_id: Whose entitlements.
            version: The policy version that computed them.
            value: The entitlements' JSON.
            ticket: :meth:`ticket`, taken before the seller was read.
            max_age: Seconds the value stays right at most (the next override start or
                expiry), when that is sooner than the TTL.
        """
        return self._put(seller_id, ("entitlements", seller_id, version), value, ticket, max_age)

    # ------------------------------------------------------------------ tiers

    def tier_of_blocking(self, seller_id: str) -> str | None:
        """The stored tier of ``seller_id`` (``None`` for an unknown seller); blocks on a miss.

        Raises:
            StoreError: The database cannot answer (nothing is cached then).
        """
        key = ("tier", seller_id)
        cached = self._get(seller_id, key)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]  # only tiers and None are put here
        if self.database is None:
            return None
        ticket = self.ticket()
        try:
            tier: str | None = self.database.get_seller(seller_id).tier
        except NotFoundError:
            tier = None  # cached too: a seller created later is announced, which drops this
        self._put(seller_id, key, tier, ticket, None)
        return tier

    async def tier_of(self, seller_id: str) -> str | None:
        """:meth:`tier_of_blocking` for async code: a hit answers at once, a miss reads in a thread.

        A database that cannot answer gives ``None`` (logged), as an unknown seller does:
        a rate limit then applies its lowest tier, and the route reports the failure.
        """
        key = ("tier", seller_id)
        cached = self._get(seller_id, key)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]  # only tiers and None are put here
        try:
            return await run_in_threadpool(self.tier_of_blocking, seller_id)
        except StoreError as exc:
            logger.warning("the tier of seller %s could not be read: %s", seller_id, exc)
            return None

    # ------------------------------------------------------------------ invalidation

    def invalidate(self, seller_id: str) -> None:
        """Drop everything cached about ``seller_id``."""
        with self._lock:
            self._generation += 1
            for key in self._by_seller.pop(seller_id, ()):
                self._entries.pop(key, None)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._by_seller.clear()

    def apply(self, event: Event) -> None:
        """Drop what ``event`` makes stale: its seller's entries, or everything for ``resync`` and ``policy.activated``."""
        if event.seller_id is not None:
            self.invalidate(event.seller_id)
        elif event.type in {"resync", "policy.activated"}:
            self.clear()


def seconds_until_change(
    moments: Iterable[dt.datetime | None], now: dt.datetime | None = None
) -> float | None:
    """Seconds from ``now`` to the first of ``moments`` still to come (override starts and expiries), or ``None``."""
    current = now or dt.datetime.now(dt.UTC)
    ahead = [(m - current).total_seconds() for m in moments if m is not None and m > current]
    return min(ahead) if ahead else None


__all__ = ["MAX_ENTRIES", "SellerCache", "seconds_until_change"]
