"""The OpenAPI schema against the service itself: schemathesis finds no 5xx and no schema violations.

Schemathesis generates requests from ``/openapi.json`` (schema-valid ones, and ones that
break the schema on purpose) and checks every answer against the schema: no server
error, a documented status, content type and headers, a body that validates, invalid
requests refused and valid ones accepted. The run is deterministic and bounded: a fixed
number of examples per operation, derandomized, with no example database on disk.
"""

from __future__ import annotations

import re
from pathlib import Path

import hypothesis
import jsonschema
import pytest
import schemathesis
from schemathesis.generation import GenerationMode

import tierpolicy
from servicesupport import app_for, auth, calls
from tierpolicy.service import PREFIX

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
SELLER = "s-1042"
ADMIN = auth("admin", "fuzzer")
SELLER_TOKEN = auth("seller", "seller-user", SELLER)

# Read once, so the engine served and the bundle stored below are the same files.
FILES = {path.name: path.read_text() for path in sorted(POLICIES.glob("*.yaml"))}
ENGINE = tierpolicy.Engine(tierpolicy.load_files(FILES, root=str(POLICIES)))
# The service's own rate limits stay on (a 429 is checked like any answer); the default
# per-client limit is raised so the run itself is not what they refuse.
APP = app_for(ENGINE, rate_limit_max_requests=1_000_000)

OVERRIDE = {
    "kind": "feature",
    "target": "listing.promoted",
    "value": True,
    "reason": "trial",
    "expires_at": "2999-01-01T00:00:00Z",
}

SEMANTIC = {
    f"POST {PREFIX}/policy/evaluate": r"an override's start must be before its expiry|^context\b",
    f"PUT {PREFIX}/sellers/{{seller_id}}": r"^unknown tier ",
    f"POST {PREFIX}/sellers/{{seller_id}}/metrics": r"^unknown metric ",
    f"POST {PREFIX}/sellers/{{seller_id}}/overrides": (
        r"^the override would expire at .*, which is not after now"
        r"|^an override's start must be before its expiry"
        r"|^a (feature|limit|tier) override"
        r"|^unknown (feature|limit|tier) "
    ),
    f"POST {PREFIX}/policy/versions": r"^the bundle does not load: ",
}
"""Per operation, the refusals of schema-valid requests its 422 documents (semantic_refusal)."""


async def without_lifespan(scope, receive, send) -> None:
    """The service, with its lifespan answered here.

    Schemathesis ends an ASGI app's lifespan after every test item, and the service's
    shutdown closes its in-memory database, so the next item would find no tables.
    """
    if scope["type"] != "lifespan":
        await APP(scope, receive, send)
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


def config() -> schemathesis.Config:
    """A deterministic run that takes ids, tiers, targets and expiries from the seeded data half of the time."""
    return schemathesis.Config.from_dict(
        {
            # The token is the run's own (see the tests); generated Authorization headers would
            # only be refused, and ignored_auth checks the refusals on its own.
            # How many examples: SETTINGS below.
            "generation": {"deterministic": True, "with-security-parameters": False},
            "dictionaries": {
                "sellers": {"values": [SELLER]},
                "versions": {"values": [ENGINE.version]},
                "overrides": {"values": [1]},
                "tiers": {"values": list(ENGINE.tiers)},
                "targets": {"values": sorted({*ENGINE.features, *ENGINE.limits})},
                "future": {"values": ["2999-01-01T00:00:00Z"]},
            },
            "parameters": {
                "path.seller_id": {"dictionary": "sellers", "probability": 0.5},
                "path.version": {"dictionary": "versions", "probability": 0.5},
                "path.override_id": {"dictionary": "overrides", "probability": 0.5},
                "body.tier": {"dictionary": "tiers", "probability": 0.5},
                "body.target": {"dictionary": "targets", "probability": 0.5},
                "body.expires_at": {"dictionary": "future", "probability": 0.5},
            },
            # A schema-valid request that the active policy set refuses is a documented 422
            # on these operations; semantic_refusal_only below keeps that to what is documented.
            "operations": [
                {
                    "include-name": name,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]
                        }
                    },
                }
                for name in SEMANTIC
            ],
        }
    )


# Loaded at import, as @schema.parametrize() needs: schemathesis.pytest.from_fixture, which
# would load it in a fixture, fails on this pytest (its items have no `_nodeid`).
schema = schemathesis.openapi.from_asgi("/openapi.json", without_lifespan, config=config())


def semantic_refusal_only(ctx, response, case) -> bool | None:
    """A schema-valid request answered 422 was refused for a reason its operation documents."""
    del ctx
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return None
    if response.status_code != 422:
        return None
    detail = response.json().get("detail", "")
    allowed = SEMANTIC.get(f"{case.method.upper()} {case.path}")
    if allowed is None or not re.search(allowed, detail):
        msg = f"a schema-valid request was refused: {detail}"
        raise AssertionError(msg)
    return True


@pytest.fixture(scope="module", autouse=True)
def _seeded():
    """A seller with metrics and an override, and the shipped policies as a stored version."""
    answers = calls(
        APP,
        (
            "PUT",
            f"{PREFIX}/sellers/{SELLER}",
            {"json": {"tier": "gold", "attributes": {"verified": True}}, "headers": ADMIN},
        ),
        (
            "POST",
            f"{PREFIX}/sellers/{SELLER}/metrics",
            {"json": {"metrics": {"orders_60d": 412}}, "headers": ADMIN},
        ),
        ("POST", f"{PREFIX}/sellers/{SELLER}/overrides", {"json": OVERRIDE, "headers": ADMIN}),
        ("POST", f"{PREFIX}/policy/versions", {"json": {"files": FILES}, "headers": ADMIN}),
    )
    assert [a.status_code for a in answers] == [200, 201, 201, 201]
    assert answers[2].json()["data"]["id"] == 1
    assert answers[3].json()["data"]["version"] == ENGINE.version
    yield
    APP.state.database.close()  # the lifespan that would close it never runs (see without_lifespan)


# Every check schemathesis has runs (none is excluded): not_a_server_error, the status
# code, content type, header and body conformance checks, negative_data_rejection,
# positive_data_acceptance (with semantic_refusal_only above), missing_required_header,
# unsupported_method, allow_header_conformance and ignored_auth (requests without the
# token must be refused); the stateful ones have nothing to follow here (no links).
SETTINGS = hypothesis.settings(max_examples=10, deadline=None, database=None, derandomize=True)


@schema.parametrize()
@SETTINGS
def test_every_operation_as_an_admin(case):
    """Every operation, called with an admin token, answers within its schema and never with a 5xx."""
    case.call_and_validate(headers=ADMIN, additional_checks=[semantic_refusal_only])


@schema.include(method="GET", path_regex=r"/sellers/|/errors$").parametrize()
@hypothesis.settings(SETTINGS, max_examples=5)
def test_the_seller_routes_as_a_seller(case):
    """What a seller may read answers within its schema for its own id and for any other."""
    case.call_and_validate(headers=SELLER_TOKEN, additional_checks=[semantic_refusal_only])


def test_rollback_is_not_a_version():
    """A GET at /policy/versions/rollback is a 405 that allows POST only, not a lookup of a version so named."""
    [wrong] = calls(APP, ("GET", f"{PREFIX}/policy/versions/rollback", {"headers": ADMIN}))
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"


def test_an_empty_override_start_is_refused():
    """An evaluation override whose starts_at is "" is refused as malformed, not taken as no start."""
    override = {**OVERRIDE, "seller_id": SELLER, "starts_at": ""}
    body = {"context": {}, "queries": [], "overrides": [override]}
    [answer] = calls(APP, ("POST", f"{PREFIX}/policy/evaluate", {"json": body, "headers": ADMIN}))
    assert answer.status_code == 422
    assert "starts_at" in answer.json()["detail"]


# --------------------------------------------------------------------------- the document


def test_the_document_is_valid_openapi_3_1():
    """/openapi.json is OpenAPI 3.1 by the specification's schema, and every schema in it is JSON Schema 2020-12."""
    document = schema.raw_schema
    assert document["openapi"].startswith("3.1.")
    schema.validate()
    schemas = [*document["components"]["schemas"].values(), *_inline_schemas(document["paths"])]
    assert len(schemas) > 20
    for each in schemas:
        jsonschema.Draft202012Validator.check_schema(each)


def test_a_broken_document_is_refused():
    """The validation above refuses a document that breaks the specification (a response without a description)."""
    broken = {**schema.raw_schema, "paths": {"/x": {"get": {"responses": {"200": {}}}}}}
    with pytest.raises(ValueError, match="description"):
        schemathesis.openapi.from_dict(broken).validate()


def test_every_route_declares_its_problems():
    """Every API operation documents its problems as application/problem+json only, and every other one its 500."""
    paths = schema.raw_schema["paths"]
    api = {"401", "403", "404", "405", "422", "429", "500"}
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses = operation["responses"]
            expected = api if path.startswith(PREFIX) else {"500"}
            if "requestBody" in operation:
                expected = expected | {"400", "413"}
            assert expected <= set(responses), (method, path, expected - set(responses))
            for status in expected:
                content = responses[status]["content"]["application/problem+json"]
                assert content["schema"] == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
            for status, response in responses.items():
                if "application/problem+json" in response.get("content", {}):
                    # Problems are only ever application/problem+json (FastAPI would add application/json).
                    assert set(response["content"]) == {"application/problem+json"}, (method, path, status)


def _inline_schemas(node):
    """Every ``schema`` object under ``node`` (parameters, request and response bodies)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                yield value
            else:
                yield from _inline_schemas(value)
    elif isinstance(node, list):
        for item in node:
            yield from _inline_schemas(item)
