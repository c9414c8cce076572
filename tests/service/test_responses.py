"""The success responses the OpenAPI document declares: every route has one, and real answers fit it exactly."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import jsonschema
import pytest

import tierpolicy
from servicesupport import app_for, auth, call, calls
from tierpolicy.service import PREFIX

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
FILES = {path.name: path.read_text() for path in sorted(POLICIES.glob("*.yaml"))}
ENGINE = tierpolicy.Engine(tierpolicy.load_files(FILES, root=str(POLICIES)))
ADMIN = auth("admin", "support.anna")
SELLER = "s-1042"

FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """RFC 3339: a date, ``T``, a time and an offset (jsonschema checks date-time only with an extra package)."""
    if not isinstance(value, str):
        return True
    parsed = dt.datetime.fromisoformat(value)
    return "T" in value and parsed.tzinfo is not None


# Every query kind, answered and failed: the evaluation answer's union in one request.
EVALUATION_REQUEST = {
    **json.loads((ROOT / "examples" / "eval-request.json").read_text()),
    "overrides": [
        {
            "id": 7,
            "seller_id": "s-48213",
            "kind": "limit",
            "target": "active_listings",
            "value": "unlimited",
            "reason": "trial",
            "expires_at": "2999-01-01T00:00:00Z",
        }
    ],
}
EVALUATION_REQUEST["queries"] = [
    *EVALUATION_REQUEST["queries"],
    {"id": 8, "kind": "entitlements"},
    {"kind": "limit", "name": "active_listings"},
    {"kind": "limit", "name": "listings.activ"},
    {
        "kind": "classify",
        "error": {"types": ["httpx.HTTPStatusError"], "status": 429, "retry_after": 30, "message": "slow"},
        "operation": "listing.create",
        "trace": True,
    },
    {
        "kind": "retry",
        "operation": "payments.capture",
        "attempt": 1,
        "elapsed": "300ms",
        "error": {"types": ["httpx.ConnectError", "Exception"], "message": "refused"},
    },
    {"kind": "retry", "operation": "search.query", "attempt": 0, "error": {"status": 503}},
    {"kind": "limits", "name": "active_listings"},
    "not an object",
]


@pytest.fixture(scope="module")
def app():
    """The service over the shipped policies, with nothing stored yet."""
    service = app_for(ENGINE, rate_limit_max_requests=1_000_000)
    yield service
    service.state.database.close()


@pytest.fixture(scope="module")
def document(app):
    """The service's OpenAPI document."""
    return app.openapi()


def success_schema(document, method: str, path: str, status: str) -> dict[str, object]:
    """The JSON Schema the document declares for ``status`` of ``method path``, resolvable on its own."""
    response = document["paths"][path][method.lower()]["responses"][status]
    schema = response["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def validator(document, method: str, path: str, status: str) -> jsonschema.Draft202012Validator:
    """A validator for the declared answer, with date-time checked."""
    return jsonschema.Draft202012Validator(
        success_schema(document, method, path, status), format_checker=FORMATS
    )


def resolved(document, schema: dict[str, object]) -> dict[str, object]:
    """``schema`` with a top-level ``#/components/schemas/`` reference followed."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return schema


# --------------------------------------------------------------------------- the document


def test_every_route_documents_a_closed_success_response(document):
    """Every operation under the prefix and every health route declares a 2xx JSON answer that is an envelope, not any object."""
    checked = []
    for path, operations in document["paths"].items():
        if not path.startswith((PREFIX, "/health/")):
            continue
        for method, operation in operations.items():
            successes = [status for status in operation["responses"] if status.startswith("2")]
            assert len(successes) == 1, (method, path, successes)
            [status] = successes
            schema = operation["responses"][status]["content"]["application/json"]["schema"]
            answer = resolved(document, schema)
            assert answer.get("type") == "object", (method, path)
            assert answer.get("additionalProperties") is False, (method, path)
            assert answer.get("properties"), (method, path)
            if path.startswith(PREFIX):
                assert set(answer["required"]) == {"data", "meta"}, (method, path)
                assert answer["properties"]["meta"] == {"$ref": "#/components/schemas/Meta"}
                data = resolved(document, answer["properties"]["data"])
                assert data not in ({}, {"type": "object"}, {"type": "object", "additionalProperties": True})
            checked.append((method, path))
    assert len(checked) == 18


def test_a_bare_object_would_be_caught(document):
    """The walk above refuses an operation whose answer is any object, as before the models existed."""
    broken = copy.deepcopy(document)
    errors = broken["paths"][f"{PREFIX}/errors"]["get"]["responses"]["200"]
    errors["content"]["application/json"]["schema"] = {"type": "object", "additionalProperties": True}
    with pytest.raises(AssertionError):
        test_every_route_documents_a_closed_success_response(broken)


def test_the_envelope_schema_refuses_extra_and_missing_members(document):
    """The declared envelope is exact: an unknown member in meta or a missing member in data does not validate."""
    check = validator(document, "GET", f"{PREFIX}/sellers/{{seller_id}}", "200")
    good = {
        "data": {
            "seller_id": SELLER,
            "tier": "gold",
            "tier_since": "2026-01-01T00:00:00Z",
            "below_since": None,
            "attributes": {"verified": True},
        },
        "meta": {"request_id": "abc", "policy_version": ENGINE.version},
    }
    check.validate(good)
    extra = copy.deepcopy(good)
    extra["meta"]["trace"] = []
    missing = copy.deepcopy(good)
    del missing["data"]["below_since"]
    not_a_time = copy.deepcopy(good)
    not_a_time["data"]["tier_since"] = "yesterday"
    for bad in (extra, missing, not_a_time):
        assert not check.is_valid(bad)


# --------------------------------------------------------------------------- real answers


def test_every_answer_fits_its_declared_schema(app, document):
    """A session over every route: each success answer validates against what the document declares for it."""
    seller = f"{PREFIX}/sellers/{SELLER}"
    override = {
        "kind": "feature",
        "target": "listing.promoted",
        "value": True,
        "reason": "trial",
        "expires_at": "2999-01-01T00:00:00Z",
    }
    session = [
        (
            "PUT",
            f"{PREFIX}/sellers/{{seller_id}}",
            seller,
            {"json": {"tier": "gold", "attributes": {"verified": True}}},
        ),
        ("PUT", f"{PREFIX}/sellers/{{seller_id}}", seller, {"json": {"tier": "bronze", "attributes": {}}}),
        ("GET", f"{PREFIX}/sellers/{{seller_id}}", seller, {}),
        (
            "POST",
            f"{PREFIX}/sellers/{{seller_id}}/metrics",
            f"{seller}/metrics",
            {"json": {"metrics": {"orders_60d": 412, "revenue_60d": 38750.5, "rating": 4.9}}},
        ),
        ("POST", f"{PREFIX}/sellers/{{seller_id}}/overrides", f"{seller}/overrides", {"json": override}),
        ("GET", f"{PREFIX}/sellers/{{seller_id}}/overrides", f"{seller}/overrides", {}),
        ("GET", f"{PREFIX}/sellers/{{seller_id}}/entitlements", f"{seller}/entitlements", {}),
        (
            "POST",
            f"{PREFIX}/tiers/reevaluate",
            f"{PREFIX}/tiers/reevaluate",
            {"json": {"seller_ids": [SELLER]}},
        ),
        ("POST", f"{PREFIX}/tiers/reevaluate", f"{PREFIX}/tiers/reevaluate", {}),
        ("GET", f"{PREFIX}/sellers/{{seller_id}}/tier", f"{seller}/tier?history=5", {}),
        (
            "DELETE",
            f"{PREFIX}/sellers/{{seller_id}}/overrides/{{override_id}}",
            f"{seller}/overrides/1",
            {},
        ),
        (
            "POST",
            f"{PREFIX}/policy/evaluate",
            f"{PREFIX}/policy/evaluate",
            {"json": EVALUATION_REQUEST},
        ),
        ("POST", f"{PREFIX}/policy/versions", f"{PREFIX}/policy/versions", {"json": {"files": FILES}}),
        ("GET", f"{PREFIX}/policy/versions", f"{PREFIX}/policy/versions", {}),
        (
            "GET",
            f"{PREFIX}/policy/versions/{{version}}",
            f"{PREFIX}/policy/versions/{ENGINE.version}",
            {},
        ),
        (
            "POST",
            f"{PREFIX}/policy/versions/{{version}}/activate",
            f"{PREFIX}/policy/versions/{ENGINE.version}/activate",
            {},
        ),
        ("GET", f"{PREFIX}/errors", f"{PREFIX}/errors", {}),
        ("GET", "/health/live", "/health/live", {}),
        ("GET", "/health/ready", "/health/ready", {}),
    ]
    answers = calls(app, *[(method, url, {"headers": ADMIN, **kw}) for method, _, url, kw in session])
    seen = set()
    for (method, template, url, _), answer in zip(session, answers, strict=True):
        assert answer.status_code in {200, 201}, (method, url, answer.text)
        errors = list(
            validator(document, method, template, str(answer.status_code)).iter_errors(answer.json())
        )
        assert errors == [], (method, url, [e.message for e in errors])
        seen.add((method, template))
    # The evaluation covered every kind of result the union declares.
    results = answers[11].json()["data"]["results"]
    assert {(r.get("kind"), r["status"]) for r in results} >= {
        (kind, "ok") for kind in ("feature", "limit", "tier", "entitlements", "classify", "retry")
    } | {("feature", "error"), ("limit", "error"), ("retry", "error"), (None, "error")}
    operations = {
        (method.upper(), path)
        for path, ops in document["paths"].items()
        if path.startswith(PREFIX)
        for method in ops
    }
    # Rollback needs a second version; it shares the activation's schema (checked just below).
    assert operations - seen == {("POST", f"{PREFIX}/policy/versions/rollback")}


def test_rollback_fits_the_activation_schema(document):
    """A rollback's answer validates against its declared schema."""
    app = app_for(ENGINE)
    second = {**FILES, "extra.yaml": "# nothing but a comment\n"}
    answers = calls(
        app,
        ("POST", f"{PREFIX}/policy/versions", {"json": {"files": FILES, "activate": True}, "headers": ADMIN}),
        (
            "POST",
            f"{PREFIX}/policy/versions",
            {"json": {"files": second, "activate": True}, "headers": ADMIN},
        ),
        ("POST", f"{PREFIX}/policy/versions/rollback", {"headers": ADMIN}),
    )
    app.state.database.close()
    assert [a.status_code for a in answers] == [201, 201, 200], answers[-1].text
    rollback = answers[-1].json()
    validator(document, "POST", f"{PREFIX}/policy/versions/rollback", "200").validate(rollback)
    assert rollback["data"]["version"] == answers[0].json()["data"]["version"]


def test_the_registry_without_an_errors_policy_has_the_same_shape(document):
    """A policy set without an Errors document lists no codes, in the shape the document declares (no stray members)."""
    engine = tierpolicy.Engine(
        tierpolicy.load_files(
            {k: v for k, v in FILES.items() if k in {"context.yaml", "tiers.yaml"}}, root="bare"
        )
    )
    app = app_for(engine)
    answer = call(app, "GET", f"{PREFIX}/errors", headers=ADMIN)
    app.state.database.close()
    assert answer.status_code == 200
    assert answer.json()["data"] == {"codes": []}
    validator(document, "GET", f"{PREFIX}/errors", "200").validate(answer.json())


def test_not_ready_fits_its_declared_schema(document):
    """The 503 of /health/ready (a database that does not answer) validates against its declared schema."""
    app = app_for(ENGINE, database_url="postgresql://nobody@127.0.0.1:1/none")
    down = call(app, "GET", "/health/ready")
    assert down.status_code == 503
    validator(document, "GET", "/health/ready", "503").validate(down.json())
    assert not validator(document, "GET", "/health/ready", "200").is_valid(down.json())
