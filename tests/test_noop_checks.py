"""Rollouts (TP430) and overrides (TP431) that change nothing for any seller."""

from __future__ import annotations

import pytest

from tierpolicy import Code
from tierpolicy.engine._loader import SourceFile, check_files
from tierpolicy.engine._noop_checks import rollout_no_op

TIERS = """\
apiVersion: tierpolicy/v1
kind: Tiers
metadata: {name: tiers}
spec:
  tiers: [{name: bronze}, {name: silver}, {name: gold}]
  features:
    listing.create: {from: bronze}
    listing.video: {from: gold}
    listing.off: {from: bronze, enabled: false}
    listing.when: {from: bronze, when: "seller.tier != 'gold'"}
    listing.partial: {from: bronze, rollout: 50}
  limits:
    flat: {values: {bronze: 600}}
    rising: {values: {bronze: 100, silver: 200, gold: unlimited}}
    open: {values: {bronze: unlimited}}
  overrides:
"""


def diagnostics(entry: str, expires: str = "2099-01-01T00:00:00Z") -> list[tuple[Code, int, str]]:
    """Check the Tiers document with one override (flow-mapping keys); return (code, line, message)."""
    line = f"    - {{seller: s-1, reason: test, expires: '{expires}', {entry}}}\n"
    result = check_files([SourceFile("tiers.yaml", (TIERS + line).encode())], root="p")
    assert not [d for d in result.diagnostics if d.is_error], result.diagnostics
    return [(d.code, d.position.line, d.message) for d in result.diagnostics]


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("limit: flat, value: 600", "every tier already gets"),
        ("limit: open, value: unlimited", "to unlimited"),
        ("feature: listing.off, value: true", "enabled: false"),
        ("feature: listing.off, value: false", "enabled: false"),
        ("feature: listing.create, value: true", "with no condition"),
    ],
)
def test_override_that_changes_nothing_is_reported(entry, words):
    """An override equal to every tier's value, or beaten by the kill switch, is a warning at its value."""
    [(code, line, message)] = diagnostics(entry)
    assert code is Code.OVERRIDE_NO_OP
    assert words in message
    assert line == TIERS.count("\n") + 1


@pytest.mark.parametrize(
    "entry",
    [
        "limit: flat, value: 601",
        "limit: rising, value: 200",
        "limit: rising, value: unlimited",
        "feature: listing.video, value: true",
        "feature: listing.create, value: false",
        "feature: listing.when, value: true",
        "feature: listing.partial, value: true",
        "tier: gold",
    ],
)
def test_override_that_matters_for_some_seller_is_not_reported(entry):
    """An override whose effect depends on the seller's tier, condition or rollout bucket is fine."""
    assert diagnostics(entry) == []


def test_expired_no_op_override_is_reported_as_expired_only():
    """An expired override is TP408 only, not also TP431."""
    found = diagnostics("limit: flat, value: 600", expires="2000-01-01T00:00:00Z")
    assert [code for code, _, _ in found] == [Code.EXPIRED_OVERRIDE]


@pytest.mark.parametrize(
    ("percent", "words"),
    [(100, "every seller"), (100.0, "every seller"), (0, "no seller"), (0.0, "no seller")],
)
def test_rollout_of_everybody_or_nobody_is_a_no_op(percent, words):
    """``rollout: 100`` and ``rollout: 0`` are reported, naming the feature."""
    found = rollout_no_op("listing.video", percent)
    assert found is not None
    message, hint = found
    assert words in message
    assert "'listing.video'" in message
    assert hint


@pytest.mark.parametrize("percent", [0.01, 12.5, 50, 99.99])
def test_partial_rollout_is_not_a_no_op(percent):
    """A rollout strictly between 0 and 100 percent is what rollouts are for."""
    assert rollout_no_op("listing.video", percent) is None
