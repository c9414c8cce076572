"""Tests of the evaluation request and answer shared by the CLI and the HTTP API."""

from __future__ import annotations

import pytest

import tierpolicy
from support import NOW
from tierpolicy.engine._evaluation import evaluate


def request(*queries: object, **extra: object) -> dict[str, object]:
    """Build a request for a verified silver seller."""
    context = {
        "seller": {
            "id": "s-1",
            "tier": "silver",
            "verified": True,
            "joined_at": "2026-01-01T00:00:00Z",
        },
        "metrics": {"orders": 50, "rating": 4.7, "claim_rate": 0.0},
    }
    return {"context": context, "queries": list(queries), **extra}


def test_mixed_queries_answer_in_order(engine):
    """Feature, limit, tier, entitlement and unknown-name queries answer in request order."""
    answer = evaluate(
        engine,
        request(
            {"kind": "feature", "name": "promoted", "id": "a"},
            {"kind": "limit", "name": "listings"},
            {"kind": "tier"},
            {"kind": "feature", "name": "promotd"},
            {"kind": "entitlements"},
        ),
    )
    assert answer["policy_version"] == engine.version
    results = answer["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in results] == ["ok", "ok", "ok", "error", "ok"]
    assert results[0]["id"] == "a"
    assert results[0]["decision"]["allowed"] is True
    assert results[1]["decision"]["value"] == 10
    assert results[2]["decision"]["qualified_tier"] == "silver"
    assert results[3]["error"] == {
        "type": "UNKNOWN_FEATURE",
        "message": "unknown feature 'promotd'; did you mean 'promoted'?",
        "name": "promotd",
        "suggestions": ["promoted"],
    }
    assert set(results[4]["decision"]["features"]) == set(engine.features)


def test_timestamps_in_the_context_are_converted(engine):
    """A timestamp attribute given as an RFC 3339 string is compared as a timestamp."""
    answer = evaluate(engine, request({"kind": "feature", "name": "veteran"}, now="2026-06-01T00:00:00Z"))
    assert answer["results"][0]["decision"]["allowed"] is True
    answer = evaluate(engine, request({"kind": "feature", "name": "veteran"}, now="2026-02-01T00:00:00Z"))
    assert answer["results"][0]["decision"]["reason"] == "CONDITION_FALSE"


def test_bad_queries_fail_alone(engine):
    """A malformed query fails with INVALID_QUERY without failing its neighbours."""
    answer = evaluate(
        engine,
        request(
            "feature",
            {"kind": "feature"},
            {"kind": "colour", "name": "x"},
            {"kind": "limit", "name": "listings", "extra": 1},
            {"kind": "feature", "name": "basic"},
        ),
    )
    statuses = [(r["status"], r.get("error", {}).get("type")) for r in answer["results"]]
    assert statuses == [
        ("error", "INVALID_QUERY"),
        ("error", "INVALID_QUERY"),
        ("error", "INVALID_QUERY"),
        ("error", "INVALID_QUERY"),
        ("ok", None),
    ]
    assert answer["results"][1]["error"]["message"] == "name: a feature query needs 'name'"


def test_invalid_context_fails_each_query(engine):
    """A context without a seller fails every query that needs one, each on its own."""
    answer = evaluate(engine, {"context": {}, "queries": [{"kind": "feature", "name": "basic"}]})
    assert answer["results"][0]["error"]["type"] == "INVALID_CONTEXT"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "the request must be a JSON object"),
        ({"queries": []}, "context: required field is missing"),
        ({"context": {}, "queries": [], "bogus": 1}, "bogus: unknown field"),
        ({"context": {}, "queries": [], "now": "tomorrow"}, "now: expected an RFC 3339 timestamp"),
        ({"context": {"seller": {"joined_at": "last year"}}, "queries": []}, "seller.joined_at"),
        ({"context": {}, "queries": "all"}, "queries"),
        (
            {
                "context": {},
                "queries": [],
                "overrides": [
                    {
                        "seller_id": "s",
                        "kind": "tier",
                        "target": "gold",
                        "reason": "r",
                        "expires_at": "soon",
                    }
                ],
            },
            "overrides[0].expires_at",
        ),
    ],
)
def test_request_level_errors_name_the_place(engine, payload, message):
    """A malformed request raises InvalidRequestError naming where it is wrong."""
    with pytest.raises(tierpolicy.InvalidRequestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        evaluate(engine, payload)


def test_request_overrides_apply(engine):
    """Overrides in the request apply to its queries."""
    override = {
        "seller_id": "s-1",
        "kind": "limit",
        "target": "listings",
        "value": "unlimited",
        "reason": "migration",
        "expires_at": "2099-01-01T00:00:00Z",
        "id": 7,
    }
    answer = evaluate(engine, request({"kind": "limit", "name": "listings"}, overrides=[override]))
    decision = answer["results"][0]["decision"]
    assert (decision["value"], decision["reason"], decision["rule"]) == (
        "unlimited",
        "OVERRIDE",
        "override:7",
    )


def test_trace_flag_per_request_and_per_query(engine):
    """Trace at the request level applies to every query unless a query says otherwise."""
    answer = evaluate(
        engine,
        request(
            {"kind": "feature", "name": "basic"},
            {"kind": "feature", "name": "basic", "trace": False},
            trace=True,
        ),
    )
    assert answer["results"][0]["decision"]["trace"] != []
    assert answer["results"][1]["decision"]["trace"] == []


def test_same_request_same_answer(engine):
    """Evaluation is deterministic: the same request gives the same answer."""
    payload = request({"kind": "entitlements"}, {"kind": "tier"}, now=NOW.isoformat())
    assert evaluate(engine, payload) == evaluate(engine, payload)


# --------------------------------------------------------------------------- classify queries


def _errors_engine() -> tierpolicy.Engine:
    """An engine over the shipped policies, which have an Errors document."""
    from pathlib import Path  # noqa: PLC0415  only these appended tests need it

    return tierpolicy.load(Path(__file__).resolve().parents[1] / "policies")


def test_classify_query_answers_with_a_classification():
    """A classify query gives the classification's JSON, next to the other kinds of query."""
    engine = _errors_engine()
    answer = evaluate(
        engine,
        {
            "context": {},
            "queries": [
                {
                    "kind": "classify",
                    "id": "c1",
                    "error": {
                        "types": ["httpx.ReadTimeout", "httpx.TimeoutException"],
                        "message": "timed out",
                    },
                    "operation": "payments.capture",
                },
                {"kind": "classify", "error": {"status": 429}, "trace": True},
            ],
        },
    )
    first, second = answer["results"]
    assert (first["index"], first["id"], first["kind"], first["status"]) == (0, "c1", "classify", "ok")
    assert first["decision"]["code"] == "PAYMENT_PROVIDER_TIMEOUT"
    assert first["decision"]["rule"] == "error-rule:payment-timeout"
    assert first["decision"]["retryable"] is True
    assert first["decision"]["policy_version"] == engine.version
    assert second["decision"]["code"] == "RATE_LIMITED"
    assert second["decision"]["trace"][-1]["outcome"] == "decide"


def test_classify_query_errors_fail_alone():
    """A classify query without an error, or with a malformed one, fails on its own."""
    answer = evaluate(
        _errors_engine(),
        {
            "context": {},
            "queries": [
                {"kind": "classify"},
                {"kind": "classify", "error": {"status": "500"}},
                {"kind": "classify", "error": {"types": ["TimeoutError"]}},
            ],
        },
    )
    results = answer["results"]
    assert results[0]["error"] == {
        "type": "INVALID_QUERY",
        "message": "error: a classify query needs 'error'",
        "location": "error",
    }
    assert results[1]["error"] == {
        "type": "INVALID_QUERY",
        "message": "error.status: Input should be a valid integer; found the text '500'",
        "location": "error.status",
    }
    assert results[2]["decision"]["code"] == "UPSTREAM_TIMEOUT"


def test_classify_query_without_errors_document(engine):
    """Asking a set without an Errors document to classify gives NO_ERRORS_POLICY for that query."""
    answer = evaluate(
        engine, request({"kind": "classify", "error": {"status": 500}}, {"kind": "feature", "name": "basic"})
    )
    assert answer["results"][0]["error"] == {
        "type": "NO_ERRORS_POLICY",
        "message": "this policy set has no Errors document: add one to classify errors",
    }
    assert answer["results"][1]["status"] == "ok"
