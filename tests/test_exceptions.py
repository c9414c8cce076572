"""Tests of the exception tree."""

import pytest

import tierpolicy
from tierpolicy.engine._diagnostics import Code, Diagnostic, Position


@pytest.mark.parametrize(
    "exc",
    [
        tierpolicy.PolicyError,
        tierpolicy.PolicyLoadError,
        tierpolicy.ExpressionError,
        tierpolicy.ExpressionSyntaxError,
        tierpolicy.ExpressionTypeError,
        tierpolicy.EvaluationError,
        tierpolicy.UnknownNameError,
        tierpolicy.UnknownFeatureError,
        tierpolicy.UnknownLimitError,
        tierpolicy.UnknownTierError,
        tierpolicy.InvalidContextError,
        tierpolicy.InvalidRequestError,
        tierpolicy.ConditionError,
        tierpolicy.ResilienceError,
        tierpolicy.CallRejectedError,
        tierpolicy.CircuitOpenError,
        tierpolicy.BulkheadFullError,
        tierpolicy.FallbackCycleError,
        tierpolicy.AttemptTimeoutError,
        tierpolicy.NoErrorsPolicyError,
    ],
)
def test_every_error_derives_from_the_root(exc):
    """One except clause on TierpolicyError catches every error the library raises."""
    assert issubclass(exc, tierpolicy.TierpolicyError)


def test_unknown_names_are_lookup_errors_with_suggestions():
    """Unknown-name errors are LookupErrors that name the missing name and suggest one."""
    exc = tierpolicy.UnknownFeatureError("analytcs", ["analytics.basic"])
    assert isinstance(exc, LookupError)
    assert str(exc) == "unknown feature 'analytcs'; did you mean 'analytics.basic'?"
    assert exc.suggestions == ("analytics.basic",)
    assert str(tierpolicy.UnknownLimitError("x")) == "unknown limit 'x'"


def test_invalid_context_is_a_value_error():
    """Malformed contexts and requests are ValueErrors too."""
    assert issubclass(tierpolicy.InvalidContextError, ValueError)
    assert str(tierpolicy.InvalidRequestError("bad", location="queries[1]")) == "queries[1]: bad"


def test_load_error_summarises_first_error_and_count():
    """PolicyLoadError keeps every diagnostic and names the first error."""
    diagnostics = [
        Diagnostic(Position("a.yaml", 1, 1), "warning", Code.EXPIRED_OVERRIDE, "old"),
        Diagnostic(Position("a.yaml", 2, 1), "error", Code.UNKNOWN_KEY, "unknown key 'x'"),
        Diagnostic(Position("a.yaml", 3, 1), "error", Code.UNKNOWN_KEY, "unknown key 'y'"),
    ]
    exc = tierpolicy.PolicyLoadError(diagnostics)
    assert len(exc.diagnostics) == 3
    assert str(exc) == "policy set failed to load: a.yaml:2:1: error[TP205]: unknown key 'x' (and 1 more)"


def test_expression_error_clamps_offset():
    """Expression errors keep an offset inside the source and a length of at least one."""
    exc = tierpolicy.ExpressionSyntaxError("bad", source="abc", offset=10, length=0, hint="h")
    assert (exc.offset, exc.length, str(exc)) == (3, 1, "bad; h")


def test_executor_rejections_carry_their_error_identity():
    """Breaker and bulkhead rejections carry AIP-193 reason and domain, so rules classify them."""
    circuit = tierpolicy.CircuitOpenError("payments.capture")
    bulkhead = tierpolicy.BulkheadFullError("notifications.email", max_concurrent=20, waited=0.1)
    assert (circuit.reason, circuit.domain) == ("CIRCUIT_OPEN", "tierpolicy")
    assert (bulkhead.reason, bulkhead.domain) == ("BULKHEAD_FULL", "tierpolicy")
    info = tierpolicy.ErrorInfo.from_exception(circuit)
    assert (info.reason, info.domain) == ("CIRCUIT_OPEN", "tierpolicy")
