"""Code that the concurrency tests run in separate processes (spawned, so it must be importable)."""

from __future__ import annotations

import threading

from tierpolicy.adapters.redis import RedisRateLimitStore
from tierpolicy.engine._gcra import GcraWindow
from tierpolicy.engine._ratelimit_store import Hit


def hammer(url: str, prefix: str, quota: int, threads: int, hits_per_thread: int) -> int:
    """Hit one counter from ``threads`` threads, each with its own client; return how many were admitted."""
    window = GcraWindow(name="w", quota=quota, period=3600, burst=quota)
    hit = Hit("rl:{one}:exact:one", (window,))
    admitted = [0] * threads
    barrier = threading.Barrier(threads)

    def worker(index: int) -> None:
        store = RedisRateLimitStore.from_url(url, prefix=prefix, socket_timeout=5)
        barrier.wait()
        admitted[index] = sum(store.hit_many([hit]).allowed for _ in range(hits_per_thread))
        store.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(admitted)
