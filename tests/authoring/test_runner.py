import dataclasses
from fractions import Fraction

import pytest

from suitesupport import POLICIES, marketplace, suite_text
from tierpolicy.authoring._runner import Coverage, CoverageItem, percent_text, run, select
from tierpolicy.authoring._suites import load_suites, read_suite_sources

SET = marketplace()


def cases_of(spec: str):
    """The cases of one in-memory suite, which must be valid."""
    loaded = read_suite_sources([("t_test.yaml", suite_text(spec).encode())], SET)
    assert loaded.diagnostics == ()
    return select(loaded.suites, None)


def test_shipped_suites_pass_with_full_rule_coverage():
    """Every marketplace suite passes and together they exercise every rule (exactly 100 %)."""
    suites = load_suites(POLICIES, SET).suites
    result = run(SET, select(suites, None))
    assert [r.case.name for r in result.results if not r.passed] == []
    assert result.coverage.uncovered == ()
    assert result.coverage.ratio == 1
    assert result.coverage.meets(Fraction(100))


def test_running_is_deterministic():
    """Running the same suites twice gives equal results and coverage."""
    cases = select(load_suites(POLICIES, SET).suites, None)
    assert run(SET, cases) == run(SET, cases)


def test_a_wrong_expectation_fails_with_expected_actual_and_trace():
    """A wrong feature expectation fails, showing both sides and the decision's trace."""
    [case] = cases_of(
        """
        sellers:
          s: {tier: silver, attributes: {verified: false, kyc_level: 2}, metrics: {rating: 4.9, claim_rate: 0.0}}
        now: 2026-06-01T00:00:00Z
        tests:
          - name: t
            seller: s
            expect: {features: {listing.promoted: allow, listing.create: allow}}
        """
    )
    [result] = run(SET, [case]).results
    assert not result.passed
    [failure] = result.failures
    assert failure.subject == "feature listing.promoted"
    assert failure.expected == {"allowed": True}
    assert failure.actual["allowed"] is False
    assert failure.actual["reason"] == "CONDITION_FALSE"
    assert any("seller.verified" in line and "condition fail" in line for line in failure.trace)


@pytest.mark.parametrize(
    ("expect", "passes"),
    [
        ("{limits: {active_listings: unlimited}}", True),
        ("{limits: {active_listings: 50000}}", False),
        (
            "{tier: {qualified: bronze, next: silver, missing: [metrics.orders_60d, metrics.revenue_60d, metrics.rating, metrics.claim_rate, metrics.late_shipment_rate]}}",
            True,
        ),
        ("{tier: {qualified: bronze, missing: [metrics.orders_60d]}}", False),
    ],
)
def test_limits_and_tiers_compare_exactly(expect, passes):
    """Limit values and missing clauses must match exactly, not partly."""
    [case] = cases_of(
        f"""
        sellers:
          s: {{tier: platinum}}
          n: {{tier: bronze, metrics: {{orders_60d: 0, revenue_60d: 0.0, rating: 1.0, claim_rate: 0.5, late_shipment_rate: 0.5, cancellation_rate: 0.0}}}}
        now: 2026-06-01T00:00:00Z
        tests:
          - name: t
            seller: {"n" if "tier" in expect else "s"}
            expect: {expect}
        """
    )
    assert run(SET, [case]).results[0].passed is passes


def test_matrix_expands_with_per_fixture_expectations():
    """A test over several sellers runs once per seller, each with its own expectation merged over the shared one."""
    cases = cases_of(
        """
        sellers:
          b: {tier: bronze}
          g: {tier: gold}
        now: 2026-06-01T00:00:00Z
        tests:
          - name: t
            sellers: [b, g]
            expect: {limits: {team_members: 1}}
            expect_by:
              g: {limits: {team_members: 10}, features: {listing.video: allow}}
        """
    )
    assert [c.label for c in cases] == ["seller=b", "seller=g"]
    assert dict(cases[0].expect.limits) == {"team_members": 1}
    assert dict(cases[1].expect.limits) == {"team_members": 10}
    assert all(r.passed for r in run(SET, cases).results)


def test_rate_limit_sequences_use_the_injected_clock():
    """Hits at offsets refill the bucket as time passes; only the 11th simultaneous hit is denied."""
    [case] = cases_of(
        """
        sellers:
          s: {tier: bronze, request: {role: seller, client_ip: 192.0.2.1}}
        tests:
          - name: t
            seller: s
            route: /api/marketplace/seller/x
            hits: [{at: 0, count: 11}, {at: 0.2, count: 3}]
            expect: {rate_limit: {denied: [11, 14]}}
        """
    )
    [result] = run(SET, [case]).results
    assert result.passed, result.comparisons


def test_a_context_error_is_a_failed_case_not_a_crash():
    """A rate limit whose key needs an attribute the fixture lacks fails the case with the reason."""
    [case] = cases_of(
        """
        sellers:
          s: {tier: bronze, request: {role: anonymous}}
        tests:
          - name: t
            seller: s
            route: /api/marketplace/seller/x
            hits: [{at: 0, count: 1}]
            expect: {rate_limit: {denied: []}}
        """
    )
    [result] = run(SET, [case]).results
    assert not result.passed
    assert "client_ip" in result.error


def test_coverage_is_exact_and_never_rounded_up():
    """999 of 1000 rules is 99.9 %: below a 100 % threshold, and shown truncated."""
    items = tuple(CoverageItem(f"r{i}", "feature", f"r{i}", "x:1:1") for i in range(1000))
    coverage = Coverage(items, frozenset(f"r{i}" for i in range(999)))
    assert coverage.ratio == Fraction(999, 1000)
    assert not coverage.meets(Fraction(100))
    assert coverage.meets(Fraction("99.9"))
    assert not coverage.meets(Fraction("99.91"))
    assert percent_text(Fraction(19999, 20000)) == "99.99"
    assert percent_text(Fraction(1, 3)) == "33.33"


def test_coverage_counts_a_feature_only_when_its_rule_decided():
    """A feature decided by an override does not count as its own rule exercised."""
    [case] = cases_of(
        """
        sellers:
          p: {id: s-10042, tier: silver}
        now: 2026-06-01T00:00:00Z
        tests:
          - name: t
            seller: p
            expect: {features: {listing.video: {allowed: true, reason: OVERRIDE}}}
        """
    )
    result = run(SET, [case])
    assert result.results[0].passed
    assert "feature:listing.video" not in result.coverage.covered


def test_removing_a_test_leaves_its_rules_uncovered():
    """Without the rate-limit suite, exactly the three rate limits are reported as not exercised."""
    suites = [s for s in load_suites(POLICIES, SET).suites if s.name != "ratelimits"]
    coverage = run(SET, select(suites, None)).coverage
    assert [item.id for item in coverage.uncovered] == [
        "ratelimit:seller-api",
        "ratelimit:service-api",
        "ratelimit:seller-api-by-address",
    ]
    assert coverage.ratio == Fraction(len(coverage.items) - 3, len(coverage.items))


def test_filter_matches_suite_or_test_names():
    """--filter globs match a suite name, a test name or suite/test, ignoring case."""
    suites = load_suites(POLICIES, SET).suites
    assert {c.suite for c in select(suites, "ratelimits")} == {"ratelimits"}
    assert {c.test for c in select(suites, "*KYC*")} == {"platinum needs full KYC"}
    assert {c.suite for c in select(suites, "errors/search*")} == {"errors"}
    assert select(suites, "nothing-matches") == []


def test_results_serialise_to_json():
    """Every case result has a JSON form naming suite, test, case and comparisons."""
    [case] = cases_of(
        """
        sellers:
          s: {tier: gold}
        now: 2026-06-01T00:00:00Z
        tests:
          - {name: t, seller: s, expect: {limits: {team_members: 10}}}
        """
    )
    data = run(SET, [case]).results[0].to_json()
    assert data["passed"] is True
    assert data["comparisons"][0]["actual"]["value"] == 10
    assert dataclasses.is_dataclass(case)
