"""The Redis adapter: rate-limit counters, shared circuit breakers and the policy-version channel.

Needs the ``redis`` extra (``pip install 'tierpolicy[redis]'``). Every Redis error is
translated into :class:`~tierpolicy.StoreError` or
:class:`~tierpolicy.StoreUnavailableError`, with redis-py's exception on ``__cause__``.
"""

from ._breaker import RedisBreakerStore
from ._channel import PolicyChannel, Subscription
from ._connect import async_client, sync_client
from ._ratelimit import SCRIPT, SCRIPT_SHA, RedisRateLimitStore

__all__ = [
    "SCRIPT",
    "SCRIPT_SHA",
    "PolicyChannel",
    "RedisBreakerStore",
    "RedisRateLimitStore",
    "Subscription",
    "async_client",
    "sync_client",
]
