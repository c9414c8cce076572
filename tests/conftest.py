"""Shared fixtures: a small policy set that exercises every tiers feature."""

from __future__ import annotations

import pytest

import tierpolicy
from support import NOW, SMALL_SET


@pytest.fixture(scope="session")
def small_set() -> tierpolicy.PolicySet:
    """The small policy set, compiled once."""
    return tierpolicy.load_files({"policy.yaml": SMALL_SET}, root="small")


@pytest.fixture
def engine(small_set: tierpolicy.PolicySet) -> tierpolicy.Engine:
    """An engine over the small set whose clock is pinned to NOW."""
    return tierpolicy.Engine(small_set, clock=lambda: NOW)
