"""Policy versions over HTTP: upload, activate, roll back, replicas following, broken versions refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

import tierpolicy
from servicesupport import app_for, auth, calls
from tierpolicy.service import PREFIX

ROOT = Path(__file__).resolve().parents[2]
V1 = {path.name: path.read_text() for path in sorted((ROOT / "policies").glob("*.yaml"))}
V2 = {**V1, "tiers.yaml": V1["tiers.yaml"] + "\n# v2: the same policies, another version\n"}
ADMIN, SERVICE = auth("admin", "maria"), auth("service", "deployer")
VERSIONS = f"{PREFIX}/policy/versions"


def version_of(files: dict[str, str]) -> str:
    """The version the engine gives a bundle."""
    return tierpolicy.load_files(files, root="x").version


def upload(files: dict[str, str], *, activate: bool = False) -> tuple[str, str, dict[str, object]]:
    """The request that uploads a bundle."""
    return ("POST", VERSIONS, {"json": {"files": files, "activate": activate}, "headers": ADMIN})


def served(app) -> str:
    """The version the app serves."""
    return app.state.holder.engine.version


def test_a_bundle_is_uploaded_listed_shown_and_refused_twice():
    """A valid bundle is stored (201), listed and shown with its files; the same bundle again is 409."""
    app = app_for()
    created, again, listed, shown = calls(
        app,
        upload(V1),
        upload(V1),
        ("GET", VERSIONS, {"headers": SERVICE}),
        ("GET", f"{VERSIONS}/{version_of(V1)}", {"headers": SERVICE}),
    )
    assert created.status_code == 201
    assert created.json()["data"]["version"] == version_of(V1)
    assert (again.status_code, again.json()["code"]) == (409, "CONFLICT")
    assert [v["version"] for v in listed.json()["data"]] == [version_of(V1)]
    assert shown.json()["data"]["files"] == V1


def test_a_broken_bundle_is_refused_with_every_diagnostic_and_not_stored():
    """A bundle that does not load is a 422 carrying the diagnostics; nothing is stored."""
    broken = {**V1, "tiers.yaml": V1["tiers.yaml"].replace("kind: Tiers", "kind: Tierz", 1)}
    app = app_for()
    refused, listed = calls(app, upload(broken), ("GET", VERSIONS, {"headers": ADMIN}))
    assert (refused.status_code, refused.json()["code"]) == (422, "VALIDATION_FAILED")
    diagnostics = refused.json()["diagnostics"]
    assert any(d["file"] == "tiers.yaml" and "Tierz" in d["message"] for d in diagnostics)
    assert refused.json()["detail"].startswith("the bundle does not load: ")
    assert listed.json()["data"] == []


@pytest.mark.parametrize(
    "name", ["../ctx.yaml", "/etc/tiers.yaml", "a/../../b.yaml", "./x.yaml", ".hidden.yaml", "a//b.yaml"]
)
def test_bundle_file_names_never_leave_the_bundle(name):
    """A file name with "..", ".", a leading slash or an empty segment is refused (422) and nothing is stored."""
    app = app_for()
    refused, listed = calls(
        app, upload({**V1, name: V1["tiers.yaml"]}), ("GET", VERSIONS, {"headers": ADMIN})
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "VALIDATION_FAILED")
    assert listed.json()["data"] == []


def test_bundle_file_names_may_name_subdirectories():
    """Suites and other files in folders (tests/tiers_test.yaml) are fine names."""
    app = app_for()
    [created] = calls(app, upload({**V1, "extra/more.yaml": "# nothing here\n"}))
    assert created.status_code == 201, created.text


def test_only_admins_upload_and_activate():
    """A service token may read versions but not upload or activate them."""
    app = app_for()
    upload_try, activate_try = calls(
        app,
        ("POST", VERSIONS, {"json": {"files": V1}, "headers": SERVICE}),
        ("POST", f"{VERSIONS}/{version_of(V1)}/activate", {"headers": SERVICE}),
    )
    assert upload_try.status_code == activate_try.status_code == 403


def test_activation_and_rollback_change_what_is_served_and_are_audited():
    """Activating serves the version at once; rolling back serves the previous one; both are audited."""
    app = app_for()
    first_served = served(app)
    calls(app, upload(V1, activate=True))
    assert served(app) == version_of(V1)
    _, activated, evaluated = calls(
        app,
        upload(V2),
        ("POST", f"{VERSIONS}/{version_of(V2)}/activate", {"headers": ADMIN}),
        ("POST", f"{PREFIX}/policy/evaluate", {"json": {"context": {}, "queries": []}, "headers": SERVICE}),
    )
    assert activated.json()["data"]["served"] == version_of(V2) == served(app)
    assert evaluated.json()["meta"]["policy_version"] == version_of(V2)
    [rolled] = calls(app, ("POST", f"{VERSIONS}/rollback", {"headers": ADMIN}))
    assert rolled.json()["data"]["version"] == version_of(V1) == served(app)
    actions = [e.action for e in app.state.database.list_audit()]
    assert actions.count("policy.add") == 2
    assert {"policy.activate", "policy.rollback"} <= set(actions)
    assert all(e.actor == "maria" for e in app.state.database.list_audit())
    assert first_served != version_of(V2)


def test_rollback_without_history_and_unknown_versions_are_refused():
    """Rolling back with nothing to return to is 409; activating an unknown version is 404."""
    missing, rollback = calls(
        app_for(),
        ("POST", f"{VERSIONS}/abcdef0123456789/activate", {"headers": ADMIN}),
        ("POST", f"{VERSIONS}/rollback", {"headers": ADMIN}),
    )
    assert (missing.status_code, rollback.status_code) == (404, 409)


def test_a_version_broken_in_the_database_keeps_the_old_one_served_and_reported():
    """A version written straight into the database that does not load: the replica keeps its version and says so."""
    app = app_for()
    calls(app, upload(V1, activate=True))
    database = app.state.database
    bad = {"tiers.yaml": "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: x}\nspec: {tiers: 3}\n"}
    database.add_policy_version(
        version="0123456789abcdef", digest="0123456789abcdef" + "0" * 48, files=bad, author="intruder"
    )
    database.activate_policy_version("0123456789abcdef")
    assert app.state.reloader.reload() == version_of(V1) == served(app)
    ready, metrics = calls(app, ("GET", "/health/ready", {}), ("GET", "/metrics", {}))
    assert ready.status_code == 200
    assert ready.json()["checks"]["policy"]["reload_failed"] == {
        "version": "0123456789abcdef",
        "error": "PolicyLoadError",
    }
    assert "tierpolicy_policy_reload_failures_total 1.0" in metrics.text


def test_the_error_registry_is_listed():
    """The registry lists every code of the active errors policy with its status and type."""
    [response] = calls(app_for(), ("GET", f"{PREFIX}/errors", {"headers": auth("seller", "u", "s-1")}))
    codes = {c["code"]: c for c in response.json()["data"]["codes"]}
    assert codes["RATE_LIMITED"]["status"] == 429
    assert codes["NOT_FOUND"]["type"] == "https://docs.marketplace.example/errors/not-found"


@pytest.mark.redis
def test_an_activation_reaches_every_replica_through_redis(tmp_path, own_redis_server):
    """Two replicas share a database and Redis: activating on one makes the other serve it too."""
    database_url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = app_for(database_url=database_url, redis_url=own_redis_server.url)
    second = app_for(database_url=database_url, redis_url=own_redis_server.url)

    async def scenario() -> tuple[str, str]:
        async with first.router.lifespan_context(first), second.router.lifespan_context(second):
            transport = httpx.ASGITransport(app=first)
            async with httpx.AsyncClient(transport=transport, base_url="http://first") as client:
                response = await client.post(VERSIONS, json={"files": V2, "activate": True}, headers=ADMIN)
                assert response.status_code == 201
            deadline = time.monotonic() + 10
            while served(second) != version_of(V2) and time.monotonic() < deadline:  # noqa: ASYNC110  polling another replica's state, no event to wait on
                await asyncio.sleep(0.05)
            return served(first), served(second)

    assert asyncio.run(scenario()) == (version_of(V2), version_of(V2))
