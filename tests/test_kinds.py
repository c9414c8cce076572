"""Tests of the registry of document kinds."""

from tierpolicy.engine._documents import ContextSpec, TiersSpec
from tierpolicy.engine._kinds import KIND_COMPILERS, SINGLETON_KINDS, SPEC_MODELS


def test_every_kind_has_a_model():
    """Context and Tiers come first; every kind with a compiler also has a spec model."""
    assert list(SPEC_MODELS.items())[:2] == [("Context", ContextSpec), ("Tiers", TiersSpec)]
    assert set(KIND_COMPILERS) <= set(SPEC_MODELS) - {"Context", "Tiers"}


def test_tiers_is_a_singleton():
    """A policy set holds at most one Tiers document."""
    assert "Tiers" in SINGLETON_KINDS
    assert set(SPEC_MODELS) >= SINGLETON_KINDS
