"""Tests of the pinned rollout hash."""

from hypothesis import given
from hypothesis import strategies as st

from tierpolicy.engine._rollout import BASIS_POINTS, percent_to_basis_points, rollout_bucket


def test_pinned_vectors():
    """The bucket formula is pinned: these values must never change between releases."""
    assert rollout_bucket("checkout.new", "s-1") == 9739
    assert rollout_bucket("checkout.new", "s-2") == 299
    assert rollout_bucket("listing.promoted", "seller-42") == 2362
    assert rollout_bucket("x", "") == 4048


@given(st.text(min_size=1), st.text())
def test_bucket_in_range(feature, seller):
    """Every bucket is a basis point between 0 and 9,999."""
    assert 0 <= rollout_bucket(feature, seller) < BASIS_POINTS


@given(st.text(min_size=1), st.text())
def test_bucket_is_stable(feature, seller):
    """The same feature and seller always land in the same bucket."""
    assert rollout_bucket(feature, seller) == rollout_bucket(feature, seller)


def test_buckets_spread_evenly():
    """Ten thousand sellers spread over the ten deciles within a few percent."""
    counts = [0] * 10
    for i in range(10_000):
        counts[rollout_bucket("checkout.new", f"seller-{i}") // 1_000] += 1
    assert all(900 <= c <= 1_100 for c in counts), counts


def test_percent_to_basis_points():
    """Percentages with two decimals convert exactly."""
    assert percent_to_basis_points(12.5) == 1250
    assert percent_to_basis_points(0.01) == 1
    assert percent_to_basis_points(100) == 10_000
