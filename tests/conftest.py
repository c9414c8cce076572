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


# ---------------------------------------------------------------- SQL databases (tests/pgserver.py)
from pgserver import PostgresServer  # noqa: E402  an appended block keeps concurrent edits of the imports above apart


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The machine's PostgreSQL (skip, or fail under CI=true, when it does not answer)."""
    server = PostgresServer()
    server.require()
    return server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A SQLAlchemy URL of a new, empty PostgreSQL database of this test's own, dropped afterwards."""
    with postgres_server.database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a new, empty database of this test's own: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
