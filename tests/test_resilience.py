"""Tests of the Resilience kind: spec models, compiling, precedence and load-time checks."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tierpolicy.engine._diagnostics import Code
from tierpolicy.engine._loader import SourceFile, check_files, load
from tierpolicy.engine._resilience import (
    DEFAULT_RECORD_CATEGORIES,
    BudgetPolicy,
    FallbackStep,
    ResilienceModel,
    _attempt_range,
    first_unreachable_attempt,
    glob_regex,
    globs_overlap,
    literal_characters,
    worst_case_duration,
)
from tierpolicy.engine._schema import kind_schema

POLICIES = Path(__file__).resolve().parents[1] / "policies"
HEADER = "apiVersion: tierpolicy/v1\nkind: Resilience\nmetadata: {name: r}\nspec:\n  operations:\n"


def check(body: str):
    """Check one Resilience document whose operations are ``body`` (indented by 4)."""
    return check_files([SourceFile("r.yaml", (HEADER + body).encode())], root="<memory>")


def model_of(body: str) -> ResilienceModel:
    """Compile a Resilience document and return its model."""
    result = check(body)
    assert result.policy_set is not None, [d.format() for d in result.diagnostics]
    model = result.policy_set.model("Resilience")
    assert isinstance(model, ResilienceModel)
    return model


def codes(body: str) -> list[tuple[str, int, int, str]]:
    """The (code, line, column, severity) of every diagnostic of a document."""
    return [(d.code.value, d.position.line, d.position.column, d.severity) for d in check(body).diagnostics]


# --------------------------------------------------------------------------- shipped set


def test_shipped_policies_compile_the_marketplace_operations():
    """policies/ loads cleanly with a policy for every marketplace provider."""
    policy_set = load(POLICIES)
    model = policy_set.model("Resilience")
    assert isinstance(model, ResilienceModel)
    assert [p.pattern for p in model.policies] == [
        "payments.*",
        "payments.capture",
        "shipping.*",
        "search.*",
        "notifications.*",
    ]
    assert not [w for w in policy_set.warnings if w.code.value.startswith("TP42")]


def test_shipped_payments_policy():
    """payments.* retries 3 times with full jitter inside 8 s; capture is not idempotent."""
    model = load(POLICIES).model("Resilience")
    assert isinstance(model, ResilienceModel)
    refund = model.policy_for("payments.refund")
    assert refund is not None
    assert refund.retry is not None
    assert (refund.pattern, refund.timeout, refund.idempotent) == ("payments.*", 2.0, True)
    assert (refund.retry.max_attempts, refund.retry.jitter, refund.retry.deadline) == (3, "full", 8.0)
    assert refund.retry.budget == BudgetPolicy("token_bucket", max_tokens=100, token_ratio=0.1)
    assert refund.rule == "resilience:payments.*"
    capture = model.policy_for("payments.capture")
    assert capture is not None
    assert (capture.pattern, capture.idempotent) == ("payments.capture", False)


def test_shipped_search_falls_back_to_cached_then_static():
    """search.* falls back to results at most 10 minutes old, then to empty results."""
    model = load(POLICIES).model("Resilience")
    assert isinstance(model, ResilienceModel)
    search = model.policy_for("search.products")
    assert search is not None
    assert search.fallback == (
        FallbackStep("cached", max_staleness=600.0),
        FallbackStep("static", value={"results": [], "total": 0, "degraded": True}),
    )
    copy = search.fallback[1].static_value()
    assert copy == search.fallback[1].value
    assert copy is not search.fallback[1].value


def test_shipped_notifications_have_a_bulkhead():
    """notifications.* allows 20 concurrent calls waiting at most 100 ms."""
    model = load(POLICIES).model("Resilience")
    assert isinstance(model, ResilienceModel)
    policy = model.policy_for("notifications.email")
    assert policy is not None
    assert policy.bulkhead is not None
    assert (policy.bulkhead.max_concurrent, policy.bulkhead.max_wait) == (20, 0.1)


# --------------------------------------------------------------------------- precedence


def test_exact_name_beats_any_glob():
    """An exact operation name wins over every glob matching it."""
    model = model_of(
        '    "*": {timeout: 1s}\n    payments.*: {timeout: 2s}\n    payments.capture: {timeout: 3s}\n'
    )
    assert [model.policy_for(n).timeout for n in ("payments.capture", "payments.refund", "x")] == [
        3.0,
        2.0,
        1.0,
    ]


def test_more_literal_characters_win():
    """Among globs, the one with the most literal characters wins, whatever the file order."""
    model = model_of('    "pay*": {timeout: 1s}\n    "payments.cap*": {timeout: 2s}\n')
    assert model.policy_for("payments.capture").pattern == "payments.cap*"
    assert model.policy_for("payments.refund").pattern == "pay*"
    assert model.policy_for("shipping.quote") is None


def test_equally_specific_overlapping_globs_are_an_error():
    """Two globs with as many literal characters that can match one name are ambiguous."""
    assert codes('    "a*.x": {timeout: 1s}\n    "*b.x": {timeout: 1s}\n') == [("TP422", 7, 5, "error")]


def test_equally_specific_disjoint_globs_are_fine():
    """Globs of equal specificity that can never match the same name may coexist."""
    model = model_of('    "payments.*": {timeout: 1s}\n    "shipping.*": {timeout: 2s}\n')
    assert model.policy_for("shipping.label").timeout == 2.0


def test_same_pattern_in_two_documents_is_an_error():
    """A pattern defined in two Resilience documents is reported at the second."""
    text = HEADER + "    payments.*: {timeout: 1s}\n---\n" + HEADER.replace("{name: r}", "{name: s}")
    text += "    payments.*: {timeout: 2s}\n"
    result = check_files([SourceFile("r.yaml", text.encode())], root="<memory>")
    assert [(d.code, d.position.line, d.message) for d in result.diagnostics] == [
        (Code.AMBIGUOUS_OPERATION_PATTERN, 13, "operation 'payments.*' is defined twice")
    ]


def test_literal_characters_and_glob_regex():
    """Specificity counts non-wildcard characters; a glob's star spans dots."""
    assert literal_characters("payments.*") == 9
    assert glob_regex("payments.*").fullmatch("payments.capture.v2")
    assert not glob_regex("payments.*").fullmatch("paymentsXcapture")


@given(
    first=st.text("ab*", max_size=4),
    second=st.text("ab*", max_size=4),
)
def test_glob_overlap_agrees_with_brute_force(first, second):
    """globs_overlap is true exactly when some short name matches both globs."""
    names = ("".join(p) for n in range(9) for p in itertools.product("ab", repeat=n))
    first_re, second_re = glob_regex(first), glob_regex(second)
    witness = any(first_re.fullmatch(n) and second_re.fullmatch(n) for n in names)
    assert globs_overlap(first, second) == witness


# --------------------------------------------------------------------------- compiling


def test_durations_compile_to_seconds_and_defaults_apply():
    """Durations become float seconds; omitted fields take their documented defaults."""
    model = model_of("    a.b:\n      timeout: 1m30s\n      retry: {}\n      circuit_breaker: {}\n")
    policy = model.policy_for("a.b")
    assert policy is not None
    assert policy.retry is not None
    assert policy.breaker is not None
    assert policy.timeout == 90.0
    assert (policy.retry.max_attempts, policy.retry.initial_delay, policy.retry.max_delay) == (3, 0.1, 10.0)
    assert (policy.retry.jitter, policy.retry.deadline, policy.retry.honor_retry_after) == (
        "full",
        None,
        True,
    )
    breaker = policy.breaker
    assert (breaker.window_type, breaker.window_size, breaker.minimum_calls) == ("count", 100, 100)
    assert (breaker.failure_rate_threshold, breaker.wait_in_open, breaker.max_wait_in_open) == (
        50.0,
        60.0,
        math.inf,
    )
    assert breaker.record_categories == DEFAULT_RECORD_CATEGORIES
    assert breaker.record_categories == {"transient", "timeout", "unavailable", "throttled", "internal"}
    assert policy.idempotent is True


def test_minimum_calls_is_capped_by_a_count_window():
    """As in resilience4j, minimum_calls larger than a count window is the window size."""
    model = model_of("    a.b:\n      circuit_breaker: {window: {size: 10}, minimum_calls: 50}\n")
    assert model.policy_for("a.b").breaker.minimum_calls == 10


def test_time_window_and_growing_open_wait():
    """A time window is whole seconds; the open wait grows by its multiplier up to the cap."""
    body = (
        "    a.b:\n      circuit_breaker:\n        window: {type: time, size: 2m}\n"
        "        wait_in_open: 10s\n        wait_multiplier: 2\n        max_wait_in_open: 35s\n"
        "        record: {categories: [unavailable], codes: [PAYMENT_DECLINED]}\n"
        "        ignore: {codes: [NOT_FOUND]}\n"
    )
    breaker = model_of(body).policy_for("a.b").breaker
    assert (breaker.window_type, breaker.window_size) == ("time", 120)
    assert [breaker.open_wait(n) for n in (1, 2, 3, 4)] == [10.0, 20.0, 35.0, 35.0]
    assert breaker.record_categories == frozenset({"unavailable"})
    assert breaker.record_codes == frozenset({"PAYMENT_DECLINED"})
    assert breaker.ignore_codes == frozenset({"NOT_FOUND"})


def test_unbounded_growing_wait_does_not_overflow():
    """Without max_wait_in_open the growing wait stays a finite number."""
    breaker = model_of("    a.b:\n      circuit_breaker: {wait_multiplier: 100}\n").policy_for("a.b").breaker
    assert breaker.max_wait_in_open == math.inf
    assert math.isfinite(breaker.open_wait(10**6))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    a.b: {timeout: 2 seconds}\n", [("TP208", 6, 20, "error")]),
        ("    a.b: {timeout: 0s}\n", [("TP208", 6, 20, "error")]),
        ("    a.b: {timeout: -1s}\n", [("TP208", 6, 20, "error")]),
        ("    a.b:\n      retry: {initial_delay: 5s, max_delay: 1s}\n", [("TP208", 7, 45, "error")]),
        (
            "    a.b:\n      circuit_breaker: {window: {type: time, size: 1500ms}}\n",
            [("TP208", 7, 52, "error")],
        ),
        ("    a.b:\n      circuit_breaker: {window: {type: time, size: 10}}\n", [("TP208", 7, 52, "error")]),
        (
            "    a.b:\n      circuit_breaker: {window: {type: count, size: 10s}}\n",
            [("TP208", 7, 53, "error")],
        ),
        (
            "    a.b:\n      fallback: [{fail: {}}, {cached: {max_staleness: 1m}}]\n",
            [("TP208", 7, 7, "error")],
        ),
        (
            "    a.b:\n      fallback: [{cached: {max_staleness: 1m}, fail: {}}]\n",
            [("TP208", 7, 18, "error")],
        ),
        ("    a.b:\n      retry: {jitter: random}\n", [("TP207", 7, 23, "error")]),
        ("    a.b: {retries: 3}\n", [("TP205", 6, 11, "error")]),
        ("    a.b:\n      retry: {categories: [transient, unavailible]}\n", [("TP208", 7, 39, "error")]),
        ("    a.b:\n      circuit_breaker: {record: {categories: [timeuot]}}\n", [("TP208", 7, 47, "error")]),
    ],
)
def test_mistakes_are_positioned(body, expected):
    """Bad durations, values and fallback chains are reported where they are written."""
    assert codes(body) == expected


def test_retry_exceeding_its_deadline_warns():
    """Worst-case attempts and backoffs beyond the deadline give TP420 at the deadline."""
    body = "    a.b:\n      timeout: 2s\n      retry: {max_attempts: 3, initial_delay: 1s, deadline: 5s}\n"
    assert codes(body) == [("TP420", 8, 61, "warning")]
    [diagnostic] = check(body).diagnostics
    assert "take 9s, more than the 5s deadline" in diagnostic.message


def test_unreachable_attempts_warn():
    """Attempts that can never start within the deadline give TP421 (and not TP420)."""
    body = "    a.b:\n      retry: {max_attempts: 5, initial_delay: 1s, jitter: none, deadline: 6s}\n"
    assert codes(body) == [("TP421", 7, 75, "warning")]
    [diagnostic] = check(body).diagnostics
    assert diagnostic.message.startswith("attempts 4 to 5 can never run")


def test_worst_case_and_unreachable_helpers():
    """The helpers behind TP420 and TP421 follow the backoff formulas."""
    policy = model_of(
        "    a.b:\n      retry: {max_attempts: 4, initial_delay: 1s, jitter: decorrelated, max_delay: 5s}\n"
    ).policy_for("a.b")
    retry = policy.retry
    # Decorrelated bounds: min(5, 3), min(5, 9), min(5, 27).
    assert worst_case_duration(retry, 1.0) == 4.0 + 3.0 + 5.0 + 5.0
    assert first_unreachable_attempt(retry) is None


def test_schema_accepts_a_resilience_document():
    """The JSON Schema of the kind names its operations and fallback steps."""
    schema = kind_schema("Resilience")
    assert schema["properties"]["kind"] == {"const": "Resilience"}
    assert set(schema["$defs"]) >= {"OperationSpec", "RetrySpec", "CircuitBreakerSpec", "FallbackStepSpec"}
    [pattern] = schema["$defs"]["ResilienceSpec"]["properties"]["operations"]["patternProperties"]
    assert re.fullmatch(pattern, "payments.*")
    assert not re.fullmatch(pattern, "Payments")


def test_shipped_resilience_conforms_to_the_schema():
    """policies/resilience.yaml validates against the published Resilience schema."""
    document = yaml.safe_load((POLICIES / "resilience.yaml").read_text(encoding="utf-8"))
    assert list(jsonschema.Draft202012Validator(kind_schema("Resilience")).iter_errors(document)) == []


def test_attempt_range_names_a_single_attempt_in_the_singular():
    """When only the last attempt is unreachable, the message names it alone."""
    assert _attempt_range(4, 4) == "attempt 4"
    assert _attempt_range(4, 5) == "attempts 4 to 5"
