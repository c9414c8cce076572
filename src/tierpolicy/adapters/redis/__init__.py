"""The Redis adapter: rate-limit counters, shared circuit breakers, the policy-version and event channels.

Needs the ``redis`` extra (``pip install 'tierpolicy[redis]'``). Every Redis error is
translated into :class:`~tierpolicy.StoreError` or
:class:`~tierpolicy.StoreUnavailableError`, with redis-py's exception on ``__cause__``.
"""

from ._breaker import RedisBreakerStore
from ._channel import PolicyChannel, Subscription
from ._connect import async_client, sync_client
from ._events import EventChannel, Subscribed
from ._ratelimit import SCRIPT, SCRIPT_SHA, RedisRateLimitStore

__all__ = [
    "SCRIPT",
    "SCRIPT_SHA",
    "EventChannel",
    "PolicyChannel",
    "RedisBreakerStore",
    "RedisRateLimitStore",
    "Subscribed",
    "Subscription",
    "async_client",
    "sync_client",
]
