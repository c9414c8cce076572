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


# --------------------------------------------------------------------------- retry queries


def _retry(
    operation: str, error: dict[str, object], attempt: int = 1, **members: object
) -> dict[str, object]:
    """A retry query."""
    return {"kind": "retry", "operation": operation, "error": error, "attempt": attempt, **members}


RETRY_QUERIES = [
    _retry("shipping.labels.create", {"status": 503}, id="retryable"),
    _retry("payments.capture", {"status": 402}, id="declined"),
    _retry("payments.capture", {"types": ["httpx.ReadTimeout", "httpx.TimeoutException"]}, id="ran"),
    _retry("payments.capture", {"types": ["httpx.ConnectError"]}, id="never-ran", elapsed="1.5s"),
    _retry("shipping.labels.create", {"status": 503}, 3, id="exhausted"),
    _retry("search.query", {"status": 503}, elapsed=1.9, id="deadline"),
    _retry("shipping.labels.create", {"status": 503, "retry_after": 5}, elapsed="10s", id="hint"),
    _retry("search.query", {"status": 503}, previous_delay="100ms", id="decorrelated"),
    _retry("ledger.post", {"status": 503}, id="no-policy"),
]
"""One retry query per outcome, against the shipped policies."""


def _outcomes(results: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """(id, retry, reason, delay, delay_min, delay_max, code, never_executed) of each result."""
    rows = []
    for result in results:
        d = result["decision"]
        assert isinstance(d, dict)
        c = d["classification"]
        rows.append((result["id"], d["retry"], d["reason"], d["delay"], d["delay_min"], d["delay_max"]))
        rows[-1] = (*rows[-1], c["code"], c["never_executed"])
    return rows


EXPECTED_OUTCOMES = [
    ("retryable", True, "RETRY", 0.25, 0.125, 0.25, "SHIPPING_PROVIDER_UNAVAILABLE", False),
    ("declined", False, "NOT_RETRYABLE", 0.0, 0.0, 0.0, "PAYMENT_DECLINED", False),
    ("ran", False, "NOT_IDEMPOTENT", 0.0, 0.0, 0.0, "PAYMENT_PROVIDER_TIMEOUT", False),
    ("never-ran", True, "RETRY", 0.2, 0.0, 0.2, "CONNECT_FAILED", True),
    ("exhausted", False, "ATTEMPTS_EXHAUSTED", 0.0, 0.0, 0.0, "SHIPPING_PROVIDER_UNAVAILABLE", False),
    ("deadline", False, "DEADLINE", 0.0, 0.05, 0.15, "SEARCH_UNAVAILABLE", False),
    ("hint", False, "RETRY_AFTER_EXCEEDS_DEADLINE", 0.0, 5.0, 5.0, "SHIPPING_PROVIDER_UNAVAILABLE", False),
    ("decorrelated", True, "RETRY", 0.3, 0.05, 0.3, "SEARCH_UNAVAILABLE", False),
    ("no-policy", False, "NO_RETRY_POLICY", 0.0, 0.0, 0.0, "UPSTREAM_UNAVAILABLE", False),
]


def test_retry_queries_answer_with_plans():
    """Each retry query answers with the plan the Python API gives, one per outcome."""
    engine = _errors_engine()
    answer = tierpolicy.evaluate(engine, {"context": {}, "queries": RETRY_QUERIES})
    results = answer["results"]
    assert [(r["index"], r["kind"], r["status"]) for r in results] == [(i, "retry", "ok") for i in range(9)]
    assert _outcomes(results) == EXPECTED_OUTCOMES
    assert results[3]["decision"]["deadline_remaining"] == 6.5
    assert results[6]["decision"]["retry_after"] == 5.0
    assert results[6]["decision"]["deadline_remaining"] == 2.0
    assert results[8]["decision"]["rule"] is None
    plan = engine.retry_plan(
        "payments.capture", tierpolicy.ErrorInfo(types=("httpx.ConnectError",)), attempt=1
    )
    assert results[3]["decision"] == {**plan.to_json(), "deadline_remaining": 6.5}


def test_retry_query_same_request_same_answer():
    """The same retry request gives the same answer twice (no jitter in the plan)."""
    engine = _errors_engine()
    payload = {"context": {}, "queries": RETRY_QUERIES, "trace": True}
    assert tierpolicy.evaluate(engine, payload) == tierpolicy.evaluate(engine, payload)


def test_retry_query_operation_may_come_from_the_error():
    """Without 'operation' the query uses error.operation; 'operation' wins over it."""
    answer = tierpolicy.evaluate(
        _errors_engine(),
        {
            "context": {},
            "queries": [
                {"kind": "retry", "error": {"status": 503, "operation": "search.query"}, "attempt": 1},
                {
                    "kind": "retry",
                    "operation": "shipping.rates",
                    "error": {"status": 503, "operation": "search.query"},
                    "attempt": 1,
                },
            ],
        },
    )
    first, second = (r["decision"] for r in answer["results"])
    assert (first["operation"], first["rule"]) == ("search.query", "resilience:search.*")
    assert (second["operation"], second["rule"]) == ("shipping.rates", "resilience:shipping.*")


def test_retry_query_trace():
    """A traced retry query lists the rules tried, the policy and the decision."""
    answer = tierpolicy.evaluate(
        _errors_engine(),
        {"context": {}, "queries": [_retry("shipping.rates", {"status": 503}, trace=True)]},
    )
    steps = [(s["step"], s["outcome"], s["rule"]) for s in answer["results"][0]["decision"]["trace"]]
    assert steps[-2:] == [
        ("resilience", "pass", "resilience:shipping.*"),
        ("retry", "decide", "resilience:shipping.*"),
    ]
    assert steps[-3] == ("rule", "decide", "error-rule:shipping-unavailable")


SEC = (
    'expected seconds >= 0 (a number such as 1.5, or a duration such as "1.5s" or "250ms"), at most 366 days'
)


@pytest.mark.parametrize(
    ("query", "location", "message"),
    [
        ({"kind": "retry", "operation": "x", "attempt": 1}, "error", "error: a retry query needs 'error'"),
        (
            {"kind": "retry", "error": {"status": 503}, "attempt": 1},
            "operation",
            "operation: a retry query needs 'operation' (or 'error.operation'): the operation whose attempt failed",
        ),
        (
            {"kind": "retry", "operation": "x", "error": {"status": 503}},
            "attempt",
            "attempt: a retry query needs 'attempt': the number of the attempt that failed, 1 for the first call",
        ),
        (
            _retry("x", {"status": 503}, 0),
            "attempt",
            "attempt: expected a whole number from 1 to 1,000,000 (the attempt that failed); found the number 0",
        ),
        (
            _retry("x", {"status": 503}, "2"),  # type: ignore[arg-type]
            "attempt",
            "attempt: expected a whole number from 1 to 1,000,000 (the attempt that failed); found the text '2'",
        ),
        (_retry("x", {"status": 503}, elapsed="-1s"), "elapsed", f"elapsed: {SEC}; found the text '-1s'"),
        (_retry("x", {"status": 503}, elapsed="soon"), "elapsed", f"elapsed: {SEC}; found the text 'soon'"),
        (_retry("x", {"status": 503}, elapsed=-0.5), "elapsed", f"elapsed: {SEC}; found the number -0.5"),
        (
            _retry("x", {"status": 503}, previous_delay=True),
            "previous_delay",
            f"previous_delay: {SEC}; found true (a boolean)",
        ),
        (
            _retry("x", {"status": "503"}),
            "error.status",
            "error.status: Input should be a valid integer; found the text '503'",
        ),
        (_retry("x", {"status": 503}, wait=1), "wait", "wait: unknown field"),
    ],
)
def test_retry_query_errors_name_the_member(query, location, message):
    """A malformed retry query fails alone with INVALID_QUERY naming the member."""
    answer = tierpolicy.evaluate(
        _errors_engine(), {"context": {}, "queries": [query, _retry("search.query", {"status": 503})]}
    )
    bad, good = answer["results"]
    assert bad["error"] == {"type": "INVALID_QUERY", "message": message, "location": location}
    assert good["status"] == "ok"


def test_retry_query_without_errors_document(engine):
    """A set without an Errors document answers a retry query with NO_ERRORS_POLICY."""
    answer = evaluate(engine, request(_retry("search.query", {"status": 503})))
    assert answer["results"][0]["error"] == {
        "type": "NO_ERRORS_POLICY",
        "message": "this policy set has no Errors document: add one to classify errors",
    }


def test_retry_query_through_the_cli(monkeypatch, capsys):
    """`tierpolicy eval` against policies/ answers retry queries as evaluate() does."""
    import io  # noqa: PLC0415  only the CLI test needs these
    import json  # noqa: PLC0415
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from tierpolicy import cli  # noqa: PLC0415

    policies = Path(__file__).resolve().parents[1] / "policies"
    payload = {"context": {}, "queries": RETRY_QUERIES}
    monkeypatch.setattr(sys, "argv", ["tierpolicy", "eval", "--policies", str(policies), "--input", "-"])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(payload).encode())))
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    assert (info.value.code in (None, 0), err) == (True, "")
    answer = json.loads(out)
    assert _outcomes(answer["results"]) == EXPECTED_OUTCOMES
    assert answer == tierpolicy.evaluate(_errors_engine(), payload)
