"""Shared fixtures: a small policy set that exercises every tiers feature."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import tierpolicy
from redisserver import RedisClusterServers, RedisServer, unique_prefix
from support import NOW, SMALL_SET

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(scope="session")
def small_set() -> tierpolicy.PolicySet:
    """The small policy set, compiled once."""
    return tierpolicy.load_files({"policy.yaml": SMALL_SET}, root="small")


@pytest.fixture
def engine(small_set: tierpolicy.PolicySet) -> tierpolicy.Engine:
    """An engine over the small set whose clock is pinned to NOW."""
    return tierpolicy.Engine(small_set, clock=lambda: NOW)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this test session's own, on a free port (tests use unique key prefixes)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test alone, which the test may stop and restart."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own."""
    return unique_prefix()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A three-node Redis Cluster of this test session's own."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()
