"""Two real ``tierpolicy serve`` processes sharing one PostgreSQL database and one Redis.

The module starts one database of its own, one redis-server of its own (the service's
key names are fixed, so replicas of other tests must not meet these) and two replicas,
from a copy of ``policies/`` whose only rate limit is on the error registry. The
replicas follow each other only through PostgreSQL and Redis: they share nothing else.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import pytest
import redis

import tierpolicy
from redisserver import RedisServer
from serviceprocess import ServiceProcess, running, upgrade_database
from servicesupport import auth
from tierpolicy.adapters.redis import PolicyChannel
from tierpolicy.adapters.sqlalchemy import Database
from tierpolicy.service import PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import httpx

    from pgserver import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
ADMIN, SERVICE, SELLER = auth("admin", "maria"), auth("service", "deployer"), auth("seller", "u", "s-1")
VERSIONS = f"{PREFIX}/policy/versions"
PROPAGATION = 10.0
"""Seconds an activation may take to reach the other replica (it takes milliseconds)."""

BROKEN_VERSION = "0123456789abcdef"
BROKEN_FILES = {
    "tiers.yaml": "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: x}\nspec: {tiers: 3}\n"
}
"""A bundle the engine refuses (``tiers`` is not a list), as if written behind the service's back."""

ERRORS_LIMIT = """\
apiVersion: tierpolicy/v1
kind: RateLimits
metadata:
  name: replica-test-ratelimits
spec:
  limits:
    - name: errors-by-address
      match:
        routes: ["/api/marketplace/seller/errors"]
      key: request.client_ip
      windows:
        - rate: 5/hour
"""
"""Five requests per address to the error registry, and no refill within the test."""


class Replicas(NamedTuple):
    """Two running replicas and what they share."""

    a: ServiceProcess
    b: ServiceProcess
    files: dict[str, str]
    """The policy directory they started from, as a bundle."""
    database_url: str
    redis_url: str


def files_of(directory: Path) -> dict[str, str]:
    """A policy directory as an upload bundle."""
    return {path.name: path.read_text() for path in sorted(directory.glob("*.yaml"))}


def variant(files: dict[str, str], tag: str) -> dict[str, str]:
    """The same policies under another version (a comment changes the hash, not the meaning)."""
    return {**files, "tiers.yaml": f"{files['tiers.yaml']}\n# {tag}\n"}


def version_of(files: dict[str, str]) -> str:
    """The version the engine gives a bundle."""
    return tierpolicy.load_files(files, root="x").version


def served(service: ServiceProcess) -> str:
    """The policy version ``service`` answers an evaluation with."""
    with service.client() as client:
        response = client.post(
            f"{PREFIX}/policy/evaluate", json={"context": {}, "queries": []}, headers=SERVICE
        )
    assert response.status_code == 200, response.text
    version: str = response.json()["meta"]["policy_version"]
    return version


def eventually(probe: Callable[[], T], accept: Callable[[T], bool], what: str) -> T:
    """``probe()`` once ``accept`` takes it, polled until ``PROPAGATION`` seconds pass; else fail with the last value."""
    deadline = time.monotonic() + PROPAGATION
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still {value!r} after {PROPAGATION:g} s")
        time.sleep(0.05)


def upload(service: ServiceProcess, files: dict[str, str]) -> str:
    """Upload and activate ``files`` through ``service``; the version it now serves."""
    with service.client() as client:
        response = client.post(VERSIONS, json={"files": files, "activate": True}, headers=ADMIN)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["active"] is True
    return served(service)


def ready(service: ServiceProcess) -> httpx.Response:
    """``service``'s answer to ``/health/ready``."""
    with service.client() as client:
        return client.get("/health/ready")


def reload_failures(service: ServiceProcess) -> float:
    """``tierpolicy_policy_reload_failures_total`` in ``service``'s ``/metrics``."""
    with service.client() as client:
        text = client.get("/metrics").text
    found = re.search(r"^tierpolicy_policy_reload_failures_total (\S+)$", text, re.MULTILINE)
    assert found is not None, text
    return float(found.group(1))


def wait_subscribed(redis_url: str, count: int) -> None:
    """Wait until ``count`` replicas listen on the policy channel, so activations reach them as messages."""
    key = PolicyChannel.from_url(redis_url).key
    with redis.Redis.from_url(redis_url) as client:
        eventually(
            lambda: dict(client.pubsub_numsub(key)).get(key.encode(), 0),
            lambda listening: listening == count,
            f"subscribers of {key}",
        )


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer) -> Iterator[Replicas]:
    """Replicas A and B on one migrated PostgreSQL database and one redis-server, both subscribed.

    Shared by the tests of this module (starting two processes costs seconds of CPU):
    each test starts from whatever version they serve and uses versions of its own.
    """
    directory = tmp_path_factory.mktemp("replicas")
    policy_dir = directory / "policies"
    shutil.copytree(ROOT / "policies", policy_dir)
    # The policy limits only the error registry, so what the other tests send counts only
    # against the default per-client limit (RATE_LIMIT_MAX_REQUESTS a minute), far above it.
    (policy_dir / "ratelimits.yaml").write_text(ERRORS_LIMIT)
    (directory / "redis").mkdir()
    redis_server = RedisServer(directory / "redis")
    redis_server.start()
    try:
        with postgres_server.database() as database_url:
            upgrade_database(database_url)
            a, b = (
                ServiceProcess(
                    f"replica-{name}",
                    directory,
                    policy_dir=policy_dir,
                    database_url=database_url,
                    redis_url=redis_server.url,
                )
                for name in "ab"
            )
            with running(a, b):
                wait_subscribed(redis_server.url, 2)
                yield Replicas(a, b, files_of(policy_dir), database_url, redis_server.url)
    finally:
        redis_server.stop()


def test_an_activation_reaches_the_other_replica_and_so_does_a_rollback(replicas):
    """A version activated through A is served by B; a rollback through B is served by A."""
    a, b = replicas.a, replicas.b
    v2, v3 = variant(replicas.files, "activation v2"), variant(replicas.files, "activation v3")
    before = eventually(lambda: (served(a), served(b)), lambda v: v[0] == v[1], "A and B agreeing")[0]
    assert len({before, version_of(v2), version_of(v3)}) == 3

    assert upload(a, v2) == version_of(v2)
    eventually(lambda: served(b), lambda v: v == version_of(v2), "B after activating v2 through A")
    assert upload(a, v3) == version_of(v3)
    eventually(lambda: served(b), lambda v: v == version_of(v3), "B after activating v3 through A")

    with b.client() as client:
        rolled = client.post(f"{VERSIONS}/rollback", headers=ADMIN)
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["data"]["served"] == version_of(v2)
    eventually(lambda: served(a), lambda v: v == version_of(v2), "A after rolling back through B")
    assert served(b) == version_of(v2)


def test_a_version_broken_in_the_database_is_refused_by_both_replicas(replicas):
    """A broken version activated straight in the database: both keep serving, report it, then recover."""
    a, b = replicas.a, replicas.b
    good = variant(replicas.files, "before the broken one")
    assert upload(a, good) == version_of(good)
    eventually(lambda: served(b), lambda v: v == version_of(good), "B after the good activation")
    failures_before = {r.name: reload_failures(r) for r in (a, b)}

    with Database.from_url(replicas.database_url) as database:
        database.add_policy_version(
            version=BROKEN_VERSION, digest=BROKEN_VERSION + "0" * 48, files=BROKEN_FILES, author="intruder"
        )
        database.activate_policy_version(BROKEN_VERSION)
    channel = PolicyChannel.from_url(replicas.redis_url)
    try:
        assert channel.publish(BROKEN_VERSION) == 2  # both replicas are listening
    finally:
        channel.close()

    for replica in (a, b):
        answer = eventually(
            lambda replica=replica: ready(replica),
            lambda r: "reload_failed" in r.json()["checks"]["policy"],
            f"{replica.name}'s readiness after the broken activation",
        )
        assert answer.status_code == 200  # still serving, so still ready
        assert answer.json()["checks"]["policy"] == {
            "ok": True,
            "version": version_of(good),
            "reload_failed": {"version": BROKEN_VERSION, "error": "PolicyLoadError"},
        }
        assert reload_failures(replica) >= failures_before[replica.name] + 1
        assert served(replica) == version_of(good)

    # Activating a good version through the API heals both, and the report goes away.
    fixed = variant(replicas.files, "after the broken one")
    assert upload(a, fixed) == version_of(fixed)
    eventually(lambda: served(b), lambda v: v == version_of(fixed), "B after the fixing activation")
    for replica in (a, b):
        assert "reload_failed" not in ready(replica).json()["checks"]["policy"]


def test_a_rate_limit_holds_across_both_replicas(replicas):
    """Five requests an hour per address: of 12 alternating between A and B, exactly 5 pass, the rest are 429 problems."""
    with replicas.a.client() as to_a, replicas.b.client() as to_b:
        answers = [(to_a, to_b)[i % 2].get(f"{PREFIX}/errors", headers=SELLER) for i in range(12)]

    assert [r.status_code for r in answers] == [200] * 5 + [429] * 7, [r.text for r in answers]
    for refused in answers[5:]:
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "RATE_LIMITED"
        assert int(refused.headers["Retry-After"]) > 0
        assert refused.headers["RateLimit"].startswith('"errors-by-address";r=0;')
