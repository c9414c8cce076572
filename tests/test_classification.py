"""Tests of the Errors kind: the registry, classification rules, the index and problem details."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import string
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tierpolicy
from strategies import error_infos, errors_documents
from tierpolicy import Code, ErrorInfo, NoErrorsPolicyError
from tierpolicy.engine._classification import (
    CATEGORIES,
    Classification,
    ErrorModel,
    expand_statuses,
    glob_regex,
    kebab,
    new_classification,
)
from tierpolicy.engine._decisions import TraceStep
from tierpolicy.engine._loader import SourceFile, check_files
from tierpolicy.engine.cel._values import compile_regex

POLICIES = Path(__file__).resolve().parents[1] / "policies"


class PaymentError(Exception):
    """A local base class that rules name."""


class CardDeclinedError(PaymentError):
    """A subclass no rule names."""


def qualified(cls: type) -> str:
    """The name a rule uses for a class defined in this module."""
    return f"{cls.__module__}.{cls.__qualname__}"


CODES = {
    "RATE_LIMITED": {
        "category": "throttled",
        "status": 429,
        "retryable": True,
        "severity": "info",
        "title": "Too many requests",
        "message": "Slow down; try {operation} again in {retry_after}.",
    },
    "UPSTREAM_DOWN": {
        "category": "unavailable",
        "status": 503,
        "retryable": True,
        "title": "Upstream down",
        "message": "A service is down.",
        "escalation": "page",
    },
    "PAYMENT_FAILED": {
        "category": "failed_precondition",
        "status": 402,
        "title": "Payment failed",
        "message": "The payment failed.",
        "type": "https://errors.example/payment",
    },
    "BAD_INPUT": {
        "category": "invalid_request",
        "status": 400,
        "title": "Bad input",
        "message": "Check the input.",
        "expose_detail": True,
    },
    "CONNECT_FAILED": {
        "category": "transient",
        "status": 503,
        "retryable": True,
        "title": "Could not connect",
        "message": "Could not connect.",
        "never_executed": True,
    },
    "INTERNAL": {
        "category": "internal",
        "status": 500,
        "title": "Internal error",
        "message": "Oops ({code}).",
    },
}


def errors_file(rules: list[dict[str, object]], codes: dict[str, object] | None = None) -> str:
    """An Errors document as YAML text (JSON is YAML)."""
    document = {
        "apiVersion": "tierpolicy/v1",
        "kind": "Errors",
        "metadata": {"name": "test-errors"},
        "spec": {"type_base": "https://errors.example/", "codes": codes or CODES, "rules": rules},
    }
    return json.dumps(document, indent=1)


def engine_for(*rules: dict[str, object]) -> tierpolicy.Engine:
    """An engine whose Errors document has these rules then a catch-all."""
    text = errors_file([*rules, {"name": "internal", "code": "INTERNAL"}])
    return tierpolicy.Engine(tierpolicy.load_files({"errors.yaml": text}))


def check(text: str) -> list[tuple[str, str, int, int]]:
    """Check one errors file and return (severity, code, line, column) of each diagnostic."""
    result = check_files([SourceFile("e.yaml", text.encode())], root="x")
    return [(d.severity, d.code.value, d.position.line, d.position.column) for d in result.diagnostics]


# --------------------------------------------------------------------------- matching


def test_subclass_matches_a_rule_naming_its_base():
    """An exception matches a rule that names one of its base classes."""
    engine = engine_for(
        {"name": "pay", "match": {"exception": qualified(PaymentError)}, "code": "PAYMENT_FAILED"}
    )
    decision = engine.classify(CardDeclinedError("card 4242 declined"))
    assert (decision.code, decision.rule, decision.status) == ("PAYMENT_FAILED", "error-rule:pay", 402)
    assert engine.classify(ValueError("x")).code == "INTERNAL"


def test_private_module_classes_match_by_public_name():
    """A rule may name httpx.ConnectTimeout for a class defined in httpx._exceptions."""
    module = types.ModuleType("httpx._exceptions")
    exec(  # noqa: S102  test fixture classes
        "class TimeoutException(Exception): pass\nclass ConnectTimeout(TimeoutException): pass",
        module.__dict__,
    )
    module.TimeoutException.__module__ = module.ConnectTimeout.__module__ = "httpx._exceptions"
    engine = engine_for(
        {"name": "connect", "match": {"exception": "httpx.ConnectTimeout"}, "code": "CONNECT_FAILED"}
    )
    decision = engine.classify(module.ConnectTimeout("connect timed out"))
    assert (decision.code, decision.never_executed, decision.retryable) == ("CONNECT_FAILED", True, True)
    assert engine.classify(module.TimeoutException("read")).code == "INTERNAL"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (429, "RATE_LIMITED"),
        (500, "UPSTREAM_DOWN"),
        (503, "UPSTREAM_DOWN"),
        (599, "UPSTREAM_DOWN"),
        (404, "BAD_INPUT"),
    ],
)
def test_status_exact_ranges_and_lists(status, code):
    """A status matches exactly, by 5xx-style range, or by a list mixing both."""
    engine = engine_for(
        {"name": "limited", "match": {"status": 429}, "code": "RATE_LIMITED"},
        {"name": "server", "match": {"status": "5xx"}, "code": "UPSTREAM_DOWN"},
        {"name": "client", "match": {"status": [400, "4xx"]}, "code": "BAD_INPUT"},
    )
    assert engine.classify(ErrorInfo(types=(), status=status)).code == code


def test_no_status_never_matches_a_status_rule():
    """An error without a status skips every status rule."""
    engine = engine_for({"name": "server", "match": {"status": "5xx"}, "code": "UPSTREAM_DOWN"})
    assert engine.classify(ErrorInfo(types=("X",))).code == "INTERNAL"


def test_message_patterns_are_unanchored_re2_searches():
    """A message pattern is an RE2 search, case-insensitive with (?i)."""
    engine = engine_for(
        {"name": "declined", "match": {"message": r"(?i)\bdeclined\b"}, "code": "PAYMENT_FAILED"}
    )
    assert engine.classify(ValueError("Card DECLINED by issuer")).code == "PAYMENT_FAILED"
    assert engine.classify(ValueError("undeclined")).code == "INTERNAL"


@pytest.mark.parametrize(
    ("operation", "code"),
    [
        ("payments.capture", "PAYMENT_FAILED"),
        ("payments.refund.partial", "PAYMENT_FAILED"),
        ("payments", "INTERNAL"),
        ("paymentsXcapture", "INTERNAL"),
        ("search.query", "UPSTREAM_DOWN"),
        ("search.queryX", "INTERNAL"),
        (None, "INTERNAL"),
    ],
)
def test_operation_globs(operation, code):
    """'*' matches any run, '?' one character, dots are literal; no operation never matches."""
    engine = engine_for(
        {"name": "payments", "match": {"operation": "payments.*"}, "code": "PAYMENT_FAILED"},
        {"name": "search", "match": {"operation": "search.quer?"}, "code": "UPSTREAM_DOWN"},
    )
    assert engine.classify(ErrorInfo(types=(), operation=operation)).code == code


def test_classify_operation_argument_overrides_the_error_s():
    """Engine.classify(operation=...) sets the operation of an exception or an ErrorInfo."""
    engine = engine_for({"name": "payments", "match": {"operation": "payments.*"}, "code": "PAYMENT_FAILED"})
    assert engine.classify(ValueError("x"), operation="payments.capture").code == "PAYMENT_FAILED"
    info = ErrorInfo(types=(), operation="search.query")
    assert engine.classify(info, operation="payments.capture").code == "PAYMENT_FAILED"
    assert engine.classify(info).code == "INTERNAL"


def test_cel_condition_over_the_error():
    """A when condition reads error fields; an absent field makes it not match."""
    engine = engine_for(
        {
            "name": "long-wait",
            "match": {"status": 429, "when": "has(error.retry_after) && error.retry_after > 60.0"},
            "code": "UPSTREAM_DOWN",
        },
        {"name": "attempt", "match": {"when": "error.attributes['attempt'] == 3"}, "code": "BAD_INPUT"},
        {"name": "limited", "match": {"status": 429}, "code": "RATE_LIMITED"},
    )
    assert engine.classify(ErrorInfo(types=(), status=429, retry_after=120.0)).code == "UPSTREAM_DOWN"
    assert engine.classify(ErrorInfo(types=(), status=429, retry_after=5.0)).code == "RATE_LIMITED"
    assert engine.classify(ErrorInfo(types=(), status=429)).code == "RATE_LIMITED"
    assert engine.classify(ErrorInfo(types=(), attributes={"attempt": 3})).code == "BAD_INPUT"


def test_reason_and_domain_match_exactly():
    """Reason and domain (AIP-193 style) must both equal the rule's."""
    engine = engine_for(
        {"name": "quota", "match": {"reason": "QUOTA", "domain": "pay.example"}, "code": "RATE_LIMITED"}
    )
    assert engine.classify(ErrorInfo(types=(), reason="QUOTA", domain="pay.example")).code == "RATE_LIMITED"
    assert engine.classify(ErrorInfo(types=(), reason="QUOTA", domain="ship.example")).code == "INTERNAL"
    assert engine.classify(ErrorInfo(types=(), reason="quota", domain="pay.example")).code == "INTERNAL"


def test_every_constraint_must_hold():
    """A rule with several constraints matches only when all of them hold."""
    engine = engine_for(
        {
            "name": "pay-timeout",
            "match": {"exception": "TimeoutError", "operation": "payments.*", "status": "5xx"},
            "code": "UPSTREAM_DOWN",
        }
    )
    assert engine.classify(ErrorInfo(types=("TimeoutError",), status=504, operation="payments.x")).code == (
        "UPSTREAM_DOWN"
    )
    assert (
        engine.classify(ErrorInfo(types=("TimeoutError",), status=504, operation="search.x")).code
        == "INTERNAL"
    )
    assert engine.classify(ErrorInfo(types=("TimeoutError",), operation="payments.x")).code == "INTERNAL"


def test_first_match_wins():
    """When several rules match, the earliest in the file decides."""
    engine = engine_for(
        {"name": "by-operation", "match": {"operation": "payments.*"}, "code": "PAYMENT_FAILED"},
        {"name": "by-exception", "match": {"exception": "TimeoutError"}, "code": "UPSTREAM_DOWN"},
    )
    decision = engine.classify(TimeoutError("t"), operation="payments.capture")
    assert (decision.code, decision.rule) == ("PAYMENT_FAILED", "error-rule:by-operation")
    assert engine.classify(TimeoutError("t"), operation="search.q").rule == "error-rule:by-exception"


def test_trace_lists_the_rules_tried():
    """With trace=True the decision lists each candidate rule and why it failed or decided."""
    engine = engine_for(
        {"name": "server", "match": {"status": "5xx"}, "code": "UPSTREAM_DOWN"},
        {"name": "payments", "match": {"operation": "payments.*"}, "code": "PAYMENT_FAILED"},
    )
    decision = engine.classify(ErrorInfo(types=(), status=404, operation="search.q"), trace=True)
    assert [step.to_json() for step in decision.trace] == [
        {
            "step": "rule",
            "outcome": "fail",
            "detail": "operation 'search.q' does not match 'payments.*'",
            "rule": "error-rule:payments",
        },
        {
            "step": "rule",
            "outcome": "decide",
            "detail": "matched: code INTERNAL",
            "rule": "error-rule:internal",
        },
    ]
    assert engine.classify(ErrorInfo(types=(), status=404)).trace == ()


# --------------------------------------------------------------------------- decisions


def test_decision_fields_and_json():
    """A classification carries the registry entry, the rule, its source and the policy version."""
    engine = engine_for({"name": "limited", "match": {"status": 429}, "code": "RATE_LIMITED"})
    decision = engine.classify(ErrorInfo(types=(), status=429, retry_after=2.2, operation="search.q"))
    assert decision.to_json() == {
        "code": "RATE_LIMITED",
        "category": "throttled",
        "status": 429,
        "retryable": True,
        "severity": "info",
        "escalation": "none",
        "title": "Too many requests",
        "message": "Slow down; try search.q again in 3 seconds.",
        "type": "https://errors.example/rate-limited",
        "never_executed": False,
        "retry_after": 2.2,
        "detail": None,
        "rule": "error-rule:limited",
        "source": "errors.yaml:56:4",
        "policy_version": engine.version,
        "trace": [],
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.code = "X"  # type: ignore[misc]


def test_message_placeholders_without_values():
    """Without an operation or a Retry-After hint the placeholders read naturally."""
    engine = engine_for({"name": "limited", "match": {"status": 429}, "code": "RATE_LIMITED"})
    assert engine.classify(ErrorInfo(types=(), status=429)).message == (
        "Slow down; try the operation again in a moment."
    )
    assert engine.classify(ErrorInfo(types=(), status=429, retry_after=1.0)).message.endswith("in 1 second.")
    assert engine.classify(ValueError("x")).message == "Oops (INTERNAL)."


def test_problem_details_never_leak_exception_text():
    """The problem JSON has no trace of the exception's text unless the entry exposes it."""
    engine = engine_for(
        {"name": "pay", "match": {"exception": qualified(PaymentError)}, "code": "PAYMENT_FAILED"}
    )
    leaked = "card 4242-4242-4242-4242 declined; db password hunter2"
    decision = engine.classify(CardDeclinedError(leaked))
    problem = decision.to_problem(instance="/orders/7/pay", request_id="req-1")
    assert problem == {
        "type": "https://errors.example/payment",
        "title": "Payment failed",
        "status": 402,
        "detail": "The payment failed.",
        "instance": "/orders/7/pay",
        "code": "PAYMENT_FAILED",
        "retryable": False,
        "request_id": "req-1",
    }
    assert "4242" not in json.dumps(problem) + json.dumps(decision.to_json())
    assert decision.detail is None


def test_problem_details_expose_detail_when_allowed():
    """An entry with expose_detail shows the error's text as the problem detail."""
    engine = engine_for({"name": "bad", "match": {"exception": "ValueError"}, "code": "BAD_INPUT"})
    decision = engine.classify(ValueError("quantity must be positive"))
    assert decision.detail == "quantity must be positive"
    assert decision.to_problem() == {
        "type": "https://errors.example/bad-input",
        "title": "Bad input",
        "status": 400,
        "detail": "quantity must be positive",
        "code": "BAD_INPUT",
        "retryable": False,
    }
    assert decision.to_problem(detail="Fix the quantity.")["detail"] == "Fix the quantity."


def test_default_type_uri_without_type_base():
    """Without type_base, problem types are URNs named after the code."""
    text = errors_file([{"name": "internal", "code": "INTERNAL"}], {"INTERNAL": CODES["INTERNAL"]})
    document = json.loads(text)
    del document["spec"]["type_base"]
    engine = tierpolicy.Engine(tierpolicy.load_files({"e.yaml": json.dumps(document)}))
    assert engine.classify(ValueError("x")).type == "urn:tierpolicy:error:internal"


def test_classify_without_errors_document_raises():
    """A set without an Errors document cannot classify: a typed EvaluationError says so."""
    tiers = "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\nspec: {tiers: [{name: bronze}]}\n"
    engine = tierpolicy.Engine(tierpolicy.load_files({"t.yaml": tiers}))
    assert engine.errors is None
    with pytest.raises(NoErrorsPolicyError) as info:
        engine.classify(ValueError("x"))
    assert isinstance(info.value, tierpolicy.EvaluationError)
    assert str(info.value) == "this policy set has no Errors document: add one to classify errors"


# --------------------------------------------------------------------------- loading


def test_catch_all_is_required():
    """Rules without an empty match as the last rule fail to load (TP414)."""
    text = errors_file([{"name": "server", "match": {"status": "5xx"}, "code": "UPSTREAM_DOWN"}])
    assert ("error", Code.MISSING_CATCH_ALL.value) in [(s, c) for s, c, _, _ in check(text)]
    with pytest.raises(tierpolicy.PolicyLoadError):
        tierpolicy.load_files({"e.yaml": text})


def test_catch_all_must_be_last():
    """A catch-all before other rules is a load error, not a shadowing warning."""
    text = errors_file(
        [
            {"name": "internal", "code": "INTERNAL"},
            {"name": "server", "match": {"status": "5xx"}, "code": "UPSTREAM_DOWN"},
        ]
    )
    assert [(s, c) for s, c, _, _ in check(text) if s != "info"] == [("error", "TP414")]


def test_unknown_code_suggests_the_closest():
    """A rule naming an undeclared code fails with a did-you-mean (TP415)."""
    text = errors_file(
        [{"name": "x", "match": {"status": 500}, "code": "INTERNL"}, {"name": "i", "code": "INTERNAL"}]
    )
    result = check_files([SourceFile("e.yaml", text.encode())], root="x")
    [diagnostic] = result.diagnostics
    assert (diagnostic.code, diagnostic.hint) == (Code.UNKNOWN_ERROR_CODE, "did you mean 'INTERNAL'?")


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ({"status": "5xx"}, {"status": [500, 503]}),
        ({"exception": ["TimeoutError", "OSError"]}, {"exception": "TimeoutError", "status": 504}),
        ({"operation": "payments.*"}, {"operation": "payments.capture", "reason": "R"}),
        ({"operation": "*"}, {"operation": "pay?ents.*"}),
        ({"reason": "R", "domain": "d"}, {"reason": "R", "domain": "d", "message": "x"}),
        ({"message": "boom"}, {"message": "boom", "status": 500}),
        ({"when": "error.status > 500"}, {"when": "error.status > 500", "reason": "R"}),
    ],
)
def test_provably_shadowed_rules_are_warned(earlier, later):
    """A rule whose every match an earlier rule covers gets a TP416 warning."""
    text = errors_file(
        [
            {"name": "earlier", "match": earlier, "code": "UPSTREAM_DOWN"},
            {"name": "later", "match": later, "code": "RATE_LIMITED"},
            {"name": "internal", "code": "INTERNAL"},
        ]
    )
    found = [(s, c) for s, c, _, _ in check(text) if c != Code.UNUSED_ERROR_CODE.value]
    assert found == [("warning", "TP416")]


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ({"status": [500, 503]}, {"status": "5xx"}),
        ({"exception": "OSError"}, {"exception": "TimeoutError"}),
        ({"exception": "TimeoutError"}, {"exception": ["TimeoutError", "OSError"]}),
        ({"operation": "payments.*"}, {"operation": "pay*"}),
        ({"operation": "payments.*"}, {"status": 500}),
        ({"message": "boom"}, {"message": "^boom$"}),
        ({"when": "error.status > 500"}, {"when": "error.status >= 501"}),
        ({"status": 500, "reason": "R"}, {"status": 500}),
    ],
)
def test_rules_not_provably_shadowed_are_not_warned(earlier, later):
    """Only provable shadowing is reported: broader, different or unrelated later rules are not."""
    text = errors_file(
        [
            {"name": "earlier", "match": earlier, "code": "UPSTREAM_DOWN"},
            {"name": "later", "match": later, "code": "RATE_LIMITED"},
            {"name": "internal", "code": "INTERNAL"},
        ]
    )
    assert [c for _, c, _, _ in check(text) if c == Code.RULE_SHADOWED.value] == []


def test_unused_codes_are_reported_as_info():
    """A code no rule gives is an info diagnostic (TP417), and the set still loads."""
    codes = {"INTERNAL": CODES["INTERNAL"], "RATE_LIMITED": CODES["RATE_LIMITED"]}
    text = errors_file([{"name": "internal", "code": "INTERNAL"}], codes)
    assert check(text) == [("info", "TP417", 16, 4)]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda c: c["INTERNAL"].update(category="oops"), "TP207"),
        (lambda c: c["INTERNAL"].update(status=600), "TP208"),
        (lambda c: c["INTERNAL"].update(message="Hi {exception}"), "TP208"),
        (lambda c: c["INTERNAL"].update(message="Hi {code!r}"), "TP208"),
        (lambda c: c["INTERNAL"].update(message="Hi {"), "TP208"),
        (lambda c: c["INTERNAL"].update(severity="fatal"), "TP207"),
        (lambda c: c["INTERNAL"].update(escalation="sms"), "TP207"),
        (lambda c: c["INTERNAL"].update(colour="red"), "TP205"),
        (lambda c: c.update(internal=c.pop("INTERNAL")), "TP208"),
    ],
)
def test_registry_entries_are_validated(change, code):
    """Unknown categories, statuses, placeholders, keys and lower-case codes are load errors."""
    codes = json.loads(json.dumps({"INTERNAL": CODES["INTERNAL"]}))
    change(codes)
    text = errors_file([{"name": "internal", "code": "INTERNAL"}], codes)
    assert code in [c for s, c, _, _ in check(text) if s == "error"]


def test_categories_are_the_documented_set():
    """The category enum is fixed."""
    assert CATEGORIES == (
        "transient",
        "throttled",
        "timeout",
        "invalid_request",
        "unauthenticated",
        "forbidden",
        "not_found",
        "conflict",
        "failed_precondition",
        "unavailable",
        "internal",
    )


def test_helpers():
    """Status ranges expand to 100 codes, globs anchor, codes kebab-case."""
    assert expand_statuses(["4xx", 500]) == frozenset([*range(400, 500), 500])
    assert glob_regex("pay?ents.*") == r"^pay.ents\..*$"
    assert compile_regex(glob_regex("a.*")).search("a.b.c") is not None
    assert kebab("IDEMPOTENCY_KEY_REUSED") == "idempotency-key-reused"


# --------------------------------------------------------------------------- the index


@settings(max_examples=60, deadline=None)
@given(document=errors_documents(), infos=st.lists(error_infos(), min_size=1, max_size=15))
def test_indexed_classification_equals_a_linear_scan(document, infos):
    """For any generated rule set and errors, the index decides exactly as a linear scan."""
    policy_set = tierpolicy.load_files({"errors.yaml": json.dumps(document)})
    model = policy_set.model("Errors")
    assert isinstance(model, ErrorModel)
    for info in infos:
        assert model.classify(info) == model.scan(info)
        assert model.classify(info, trace=True).rule == model.scan(info).rule


def test_candidates_stay_flat_as_rules_grow():
    """Adding rules for other exceptions and statuses does not grow an error's candidate list."""

    def model_with(extra: int) -> ErrorModel:
        rules = [
            {
                "name": f"other-{i}",
                "match": {"exception": f"lib.Error{i}", "status": 400 + i % 100},
                "code": "BAD_INPUT",
            }
            for i in range(extra)
        ]
        rules += [
            {"name": "timeout", "match": {"exception": "TimeoutError"}, "code": "UPSTREAM_DOWN"},
            {"name": "internal", "code": "INTERNAL"},
        ]
        model = tierpolicy.load_files({"e.yaml": errors_file(rules)}).model("Errors")
        assert isinstance(model, ErrorModel)
        return model

    info = ErrorInfo.from_exception(TimeoutError("t"))
    small, large = model_with(0), model_with(900)
    assert [r.name for r in small.candidates(info)] == ["timeout", "internal"]
    assert [r.name for r in large.candidates(info)] == ["timeout", "internal"]
    assert large.classify(info).code == small.classify(info).code == "UPSTREAM_DOWN"


def test_memo_is_bounded():
    """The candidate memo never holds more than MEMO_SIZE entries."""
    engine = engine_for({"name": "server", "match": {"status": "5xx"}, "code": "UPSTREAM_DOWN"})
    model = engine.errors
    assert model is not None
    for i in range(ErrorModel.MEMO_SIZE + 10):
        model.classify(ErrorInfo(types=(f"E{i}",)))
    assert len(model._memo) <= ErrorModel.MEMO_SIZE


def test_static_decisions_are_shared():
    """A placeholder-free message gives the same decision object for every match."""
    engine = engine_for({"name": "server", "match": {"status": "5xx"}, "code": "UPSTREAM_DOWN"})
    first = engine.classify(ErrorInfo(types=(), status=503))
    assert engine.classify(ErrorInfo(types=(), status=500)) is first
    assert isinstance(first, Classification)


# --------------------------------------------------------------------------- fast decisions
# Decisions with a rendered message or a Retry-After hint are built without the dataclass
# __init__, from templates precompiled at load time, and memoised per (rule, operation,
# hint). These tests hold them to what the plain dataclass and str.Formatter give.


def reference_seconds(seconds: float | None) -> str:
    """The Retry-After words, as the registry documents them."""
    if seconds is None:
        return "a moment"
    whole = max(1, math.ceil(seconds))
    return "1 second" if whole == 1 else f"{whole} seconds"


def reference_message(template: str, code: str, status: int, info: ErrorInfo) -> str:
    """The message of ``template`` for ``info``, parsed afresh from the policy text."""
    values = {
        "code": code,
        "status": str(status),
        "operation": info.operation or "the operation",
        "retry_after": reference_seconds(info.retry_after),
    }
    return "".join(
        literal + (values[field] if field is not None else "")
        for literal, field, _, _ in string.Formatter().parse(template)
    )


def reference_decision(
    model: ErrorModel, codes: dict[str, dict[str, object]], info: ErrorInfo
) -> Classification:
    """The decision for ``info`` built with the plain dataclass constructor."""
    rule = next(rule for rule in model.rules if rule.matches(info))
    entry = rule.entry
    spec = codes[entry.code]
    return Classification(
        code=entry.code,
        category=entry.category,
        status=entry.status,
        retryable=entry.retryable,
        severity=entry.severity,
        escalation=entry.escalation,
        title=entry.title,
        message=reference_message(str(spec["message"]), entry.code, entry.status, info),
        type=entry.type,
        never_executed=entry.never_executed,
        rule=rule.rule,
        source=rule.source,
        policy_version=model.policy_version,
        retry_after=info.retry_after,
        detail=(info.message or None) if entry.expose_detail else None,
    )


def assert_same_value(fast: Classification, plain: Classification) -> None:
    """Equal, hash-equal, identically printed and as frozen as the plain dataclass value."""
    assert type(fast) is Classification
    assert fast == plain
    assert hash(fast) == hash(plain)
    assert repr(fast) == repr(plain)
    assert fast.to_json() == plain.to_json()
    for field in dataclasses.fields(Classification):
        mine, theirs = getattr(fast, field.name), getattr(plain, field.name)
        assert type(mine) is type(theirs), field.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.message = "changed"  # type: ignore[misc]
    for value in (fast, plain):  # no new attribute either (CPython's message varies by version)
        with pytest.raises((AttributeError, TypeError)):
            value.extra = 1  # type: ignore[attr-defined]


FAST_CODES: dict[str, dict[str, object]] = {
    "FIXED": {"category": "unavailable", "status": 503, "title": "Fixed", "message": "Down for now."},
    "PER_OPERATION": {
        "category": "transient",
        "status": 502,
        "retryable": True,
        "title": "Per operation",
        "message": "{operation} failed ({code}, HTTP {status}); try again in {retry_after}.",
    },
    "LEADING_AND_TRAILING": {
        "category": "throttled",
        "status": 429,
        "severity": "warning",
        "escalation": "alert",
        "title": "Edges",
        "message": "{retry_after}{operation}{{literal}}{code}",
    },
    "FIXED_PLACEHOLDERS": {
        "category": "conflict",
        "status": 409,
        "title": "Only fixed placeholders",
        "message": "{{{code}}} at {status}.",
        "never_executed": True,
    },
    "EXPOSED": {
        "category": "invalid_request",
        "status": 400,
        "title": "Exposed",
        "message": "Bad {operation}.",
        "expose_detail": True,
    },
    "INTERNAL": {"category": "internal", "status": 500, "title": "Internal", "message": "Oops ({code})."},
}
FAST_RULES: list[dict[str, object]] = [
    {"name": "fixed", "match": {"status": 503}, "code": "FIXED"},
    {"name": "per-operation", "match": {"status": 502}, "code": "PER_OPERATION"},
    {"name": "edges", "match": {"status": 429}, "code": "LEADING_AND_TRAILING"},
    {"name": "fixed-placeholders", "match": {"status": 409}, "code": "FIXED_PLACEHOLDERS"},
    {"name": "exposed", "match": {"status": 400}, "code": "EXPOSED"},
    {"name": "traced-by-message", "match": {"status": 404, "message": "^gone"}, "code": "PER_OPERATION"},
    {"name": "internal", "code": "INTERNAL"},
]
FAST_STATUSES = (503, 502, 429, 409, 400, 404, 500, None)
FAST_HINTS = (None, 0.0, -0.0, 0, 1, 3, True, 0.2, 1.0, 1.5, 2.2, 59.99, 7200.0, -4.0, 31622400.0, 1e-300)


def fast_model(codes: dict[str, dict[str, object]] | None = None) -> ErrorModel:
    """The Errors model of FAST_RULES over ``codes``."""
    text = errors_file(FAST_RULES, codes or FAST_CODES)
    model = tierpolicy.load_files({"errors.yaml": text}).model("Errors")
    assert isinstance(model, ErrorModel)
    return model


@pytest.mark.parametrize("status", FAST_STATUSES)
@pytest.mark.parametrize("retry_after", FAST_HINTS)
@pytest.mark.parametrize("operation", [None, "payments.capture", ""])
def test_fast_decisions_equal_the_plain_dataclass(status, retry_after, operation):
    """Every code, hint and operation: the same value as Classification(...) gives, each call."""
    model = fast_model()
    info = ErrorInfo(
        types=(), status=status, message="gone: the text", operation=operation, retry_after=retry_after
    )
    plain = reference_decision(model, FAST_CODES, info)
    first = model.classify(info)
    assert_same_value(first, plain)
    assert_same_value(model.classify(info), plain)  # memoised or not, still the same value
    assert_same_value(model.scan(info), plain)
    traced = model.classify(info, trace=True)
    assert traced.trace
    assert_same_value(dataclasses.replace(traced, trace=()), plain)


def test_fast_decisions_through_the_engine():
    """From an exception with a Retry-After hint, and with the operation argument."""
    engine = tierpolicy.Engine(tierpolicy.load_files({"errors.yaml": errors_file(FAST_RULES, FAST_CODES)}))
    model = engine.errors
    assert model is not None

    class ThrottledError(Exception):
        status_code = 429
        retry_after = "7"

    decision = engine.classify(ThrottledError("slow"), operation="search.query")
    assert decision.message == "7 secondssearch.query{literal}LEADING_AND_TRAILING"
    info = ErrorInfo(types=(), status=429, message="slow", operation="search.query", retry_after=7.0)
    assert_same_value(decision, reference_decision(model, FAST_CODES, info))
    assert engine.classify(ThrottledError("slow"), operation="search.query") is decision
    other = engine.classify(ThrottledError("slow"), operation="search.other")
    assert other.message == "7 secondssearch.other{literal}LEADING_AND_TRAILING"
    assert other != decision


def test_fast_decisions_memoise_only_what_cannot_differ():
    """Exposed text, zero, integer and odd hints are built per call; memoised ones are shared."""
    model = fast_model()
    shared = ErrorInfo(types=(), status=502, operation="a.b", retry_after=2.5)
    assert model.classify(shared) is model.classify(
        ErrorInfo(types=(), status=502, operation="a.b", retry_after=2.5)
    )
    exposed = [model.classify(ErrorInfo(types=(), status=400, message=text)) for text in ("one", "two")]
    assert [d.detail for d in exposed] == ["one", "two"]
    zero, negative_zero = (
        model.classify(ErrorInfo(types=(), status=503, retry_after=v)) for v in (0.0, -0.0)
    )
    assert (repr(zero.retry_after), repr(negative_zero.retry_after)) == ("0.0", "-0.0")
    whole, real = (model.classify(ErrorInfo(types=(), status=503, retry_after=v)) for v in (3, 3.0))
    assert (type(whole.retry_after), type(real.retry_after)) == (int, float)
    assert whole == real


@pytest.mark.parametrize("code_status", [503, 502, 409])
@pytest.mark.parametrize(("hint", "error"), [(math.nan, ValueError), (math.inf, OverflowError)])
def test_a_hint_that_is_not_finite_still_raises(code_status, hint, error):
    """As before: putting a NaN or infinite hint in words raises, whatever the template, every time."""
    model = fast_model()
    info = ErrorInfo(types=(), status=code_status, retry_after=hint)
    for _ in range(2):
        with pytest.raises(error):
            model.classify(info)


def test_decision_memo_is_bounded():
    """The per-(rule, operation, hint) decisions never exceed MEMO_SIZE entries."""
    model = fast_model()
    for i in range(ErrorModel.MEMO_SIZE + 10):
        decision = model.classify(ErrorInfo(types=(), status=502, operation=f"op{i}"))
        assert decision.message.startswith(f"op{i} failed")
    assert 0 < len(model._decisions) <= ErrorModel.MEMO_SIZE


def test_new_classification_equals_the_dataclass_constructor():
    """The fast constructor gives the same frozen value, which pickles and replaces alike."""
    args = (
        "RATE_LIMITED",
        "throttled",
        429,
        True,
        "info",
        "none",
        "Too many requests",
        "Slow down.",
        "urn:x",
        False,
        "error-rule:r",
        "e.yaml:1:2",
        "v1",
        2.5,
        None,
        (TraceStep("rule", "decide", "matched", "error-rule:r"),),
    )
    fast, plain = new_classification(*args), Classification(*args)
    assert_same_value(fast, plain)
    assert pickle.loads(pickle.dumps(fast)) == plain  # noqa: S301  our own bytes
    assert dataclasses.replace(fast, message="other") == dataclasses.replace(plain, message="other")
    assert dataclasses.asdict(fast) == dataclasses.asdict(plain)


LITERALS = ("", "Try ", " again", ".", "{{", "}}", "{{x}}", "é ü", " ")
PLACEHOLDERS = ("{code}", "{status}", "{operation}", "{retry_after}")


@st.composite
def message_templates(draw: st.DrawFn) -> str:
    """A safe message template: literals (with escaped braces) and placeholders in any order."""
    parts = draw(st.lists(st.sampled_from(LITERALS) | st.sampled_from(PLACEHOLDERS), max_size=8))
    return "".join(parts) + draw(st.sampled_from(("!", ".", "{operation}", "{retry_after}")))


@settings(max_examples=60, deadline=None)
@given(
    templates=st.lists(message_templates(), min_size=3, max_size=3),
    exposed=st.lists(st.booleans(), min_size=3, max_size=3),
    infos=st.lists(
        st.builds(
            ErrorInfo,
            types=st.just(()),
            status=st.sampled_from(FAST_STATUSES),
            message=st.sampled_from(("", "gone", "boom")),
            operation=st.none() | st.sampled_from(("", "payments.capture", "x")),
            retry_after=st.sampled_from(FAST_HINTS)
            | st.floats(min_value=-10.0, max_value=1e7, allow_nan=False)
            | st.integers(min_value=-5, max_value=10**6),
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_fast_decisions_equal_the_plain_dataclass_for_any_template(templates, exposed, infos):
    """For generated templates and errors, every decision equals the plain construction."""
    codes = {name: dict(spec) for name, spec in FAST_CODES.items()}
    for name, template, expose in zip(
        ("PER_OPERATION", "LEADING_AND_TRAILING", "FIXED"), templates, exposed, strict=True
    ):
        codes[name]["message"] = template
        codes[name]["expose_detail"] = expose
    model = fast_model(codes)
    for info in [*infos, *infos]:  # the second round meets the memoised decisions
        assert_same_value(model.classify(info), reference_decision(model, codes, info))


# --------------------------------------------------------------------------- the marketplace set


def _fake_module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(source, module.__dict__)  # noqa: S102  test fixture classes
    for value in module.__dict__.values():
        if isinstance(value, type):
            value.__module__ = name
    return module


HTTPX = _fake_module(
    "httpx._exceptions",
    """
class HTTPError(Exception): pass
class TransportError(HTTPError): pass
class TimeoutException(TransportError): pass
class ConnectTimeout(TimeoutException): pass
class ReadTimeout(TimeoutException): pass
class NetworkError(TransportError): pass
class ConnectError(NetworkError): pass
class ReadError(NetworkError): pass
class HTTPStatusError(HTTPError):
    def __init__(self, message, response):
        super().__init__(message)
        self.response = response
""",
)
REQUESTS = _fake_module(
    "requests.exceptions",
    """
class RequestException(OSError): pass
class ConnectionError(RequestException): pass
class Timeout(RequestException): pass
class ConnectTimeout(ConnectionError, Timeout): pass
class ReadTimeout(Timeout): pass
""",
)


class _Response:
    def __init__(self, status_code: int, retry_after: str | None = None) -> None:
        self.status_code = status_code
        self.headers = {"Retry-After": retry_after} if retry_after else {}


class AppError(Exception):
    """An error our services raise, AIP-193 style."""

    def __init__(self, reason: str, domain: str = "seller.marketplace") -> None:
        super().__init__(f"{reason} (internal detail)")
        self.reason = reason
        self.domain = domain


@pytest.fixture(scope="module")
def marketplace() -> tierpolicy.Engine:
    """The shipped policy set."""
    return tierpolicy.load(POLICIES)


@pytest.mark.parametrize(
    ("error", "operation", "code"),
    [
        (HTTPX.ConnectTimeout("t"), "payments.capture", "CONNECT_FAILED"),
        (HTTPX.ConnectError("refused"), "search.query", "CONNECT_FAILED"),
        (ConnectionRefusedError(111, "refused"), None, "CONNECT_FAILED"),
        (REQUESTS.ConnectTimeout("t"), "shipping.rates", "CONNECT_FAILED"),
        (HTTPX.ReadTimeout("t"), "payments.capture", "PAYMENT_PROVIDER_TIMEOUT"),
        (HTTPX.ReadTimeout("t"), "shipping.label", "SHIPPING_PROVIDER_TIMEOUT"),
        (HTTPX.ReadTimeout("t"), "search.query", "SEARCH_UNAVAILABLE"),
        (HTTPX.ReadTimeout("t"), "notifications.send", "UPSTREAM_TIMEOUT"),
        (TimeoutError("t"), None, "UPSTREAM_TIMEOUT"),
        (REQUESTS.ConnectionError("reset"), "payments.capture", "PAYMENT_PROVIDER_UNAVAILABLE"),
        (REQUESTS.ConnectionError("reset"), None, "UPSTREAM_UNAVAILABLE"),
        (HTTPX.ReadError("eof"), "search.query", "SEARCH_UNAVAILABLE"),
        (HTTPX.HTTPStatusError("x", _Response(402)), "payments.capture", "PAYMENT_DECLINED"),
        (
            HTTPX.HTTPStatusError("Your card was declined", _Response(400)),
            "payments.capture",
            "PAYMENT_DECLINED",
        ),
        (HTTPX.HTTPStatusError("x", _Response(400)), "payments.capture", "MALFORMED_REQUEST"),
        (HTTPX.HTTPStatusError("x", _Response(503)), "payments.capture", "PAYMENT_PROVIDER_UNAVAILABLE"),
        (HTTPX.HTTPStatusError("x", _Response(504)), "payments.capture", "PAYMENT_PROVIDER_TIMEOUT"),
        (HTTPX.HTTPStatusError("x", _Response(502)), "shipping.rates", "SHIPPING_PROVIDER_UNAVAILABLE"),
        (HTTPX.HTTPStatusError("x", _Response(500)), "search.query", "SEARCH_UNAVAILABLE"),
        (HTTPX.HTTPStatusError("x", _Response(429, "30")), None, "RATE_LIMITED"),
        (HTTPX.HTTPStatusError("x", _Response(429, "86400")), None, "QUOTA_EXCEEDED"),
        (HTTPX.HTTPStatusError("x", _Response(404)), None, "NOT_FOUND"),
        (HTTPX.HTTPStatusError("x", _Response(412)), None, "VERSION_CONFLICT"),
        (HTTPX.HTTPStatusError("x", _Response(413)), None, "PAYLOAD_TOO_LARGE"),
        (HTTPX.HTTPStatusError("x", _Response(500)), None, "INTERNAL"),
        (AppError("FEATURE_NOT_IN_TIER"), None, "FEATURE_NOT_IN_TIER"),
        (AppError("LISTING_NOT_FOUND"), None, "LISTING_NOT_FOUND"),
        (AppError("CIRCUIT_OPEN", "tierpolicy"), "payments.capture", "CIRCUIT_OPEN"),
        (AppError("CIRCUIT_OPEN"), None, "INTERNAL"),
        (KeyError("x"), None, "INTERNAL"),
    ],
)
def test_marketplace_classification(marketplace, error, operation, code):
    """The shipped rules classify httpx- and requests-style exceptions, statuses and app errors."""
    assert marketplace.classify(error, operation=operation).code == code


def test_marketplace_rate_limit_problem(marketplace):
    """RATE_LIMITED honours Retry-After in its message and renders as problem details."""
    error = HTTPX.HTTPStatusError("upstream said: slow down, key sk_live_123", _Response(429, "30"))
    decision = marketplace.classify(error, operation="listing.create")
    assert (decision.retryable, decision.retry_after) == (True, 30.0)
    assert decision.to_problem(instance="/api/marketplace/seller/listings", request_id="r-9") == {
        "type": "https://docs.marketplace.example/errors/rate-limited",
        "title": "Too many requests",
        "status": 429,
        "detail": "Too many requests. Try again in 30 seconds.",
        "instance": "/api/marketplace/seller/listings",
        "code": "RATE_LIMITED",
        "retryable": True,
        "request_id": "r-9",
    }


def test_marketplace_circuit_open_is_not_retryable(marketplace):
    """A rejection by an open breaker is unavailable and not retryable."""
    decision = marketplace.classify(AppError("CIRCUIT_OPEN", "tierpolicy"), operation="payments.capture")
    assert (decision.category, decision.retryable, decision.status) == ("unavailable", False, 503)
    assert decision.message == (
        "payments.capture is temporarily switched off after repeated failures. Try again in a moment."
    )


def test_marketplace_has_about_thirty_codes(marketplace):
    """The registry holds the marketplace's codes, every one reachable by a rule."""
    model = marketplace.errors
    assert model is not None
    assert len(model.codes) == 33
    assert {rule.entry.code for rule in model.rules} == set(model.codes)
    assert model.rules[-1].catch_all
