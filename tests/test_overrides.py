"""Tests of per-seller overrides: validation, the active window and how values read."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from support import NOW
from tierpolicy import Override

LATER = NOW + dt.timedelta(days=30)
BERLIN = dt.timezone(dt.timedelta(hours=1))


def feature(value: object = True, **extra: object) -> Override:
    """A feature override for seller s-1, valid until LATER unless told otherwise."""
    return Override("s-1", "feature", "promoted", value, "pilot", extra.pop("expires_at", LATER), **extra)


def test_defaults_name_a_request_override():
    """Without rule, source, author or start, an override is an open-ended request override."""
    override = feature()
    assert (override.rule, override.source, override.author, override.starts_at) == (
        "override",
        "request",
        "",
        None,
    )


def test_overrides_are_frozen_values():
    """Overrides cannot be changed, and equal fields make equal overrides."""
    override = feature()
    assert override == feature()
    with pytest.raises(dataclasses.FrozenInstanceError):
        override.value = False  # type: ignore[misc]


def test_naive_expiry_is_rejected():
    """An expiry without a timezone is a ValueError."""
    with pytest.raises(ValueError, match="must carry a timezone"):
        feature(expires_at=dt.datetime(2099, 1, 1))  # noqa: DTZ001  the point of the test


def test_naive_start_is_rejected():
    """A start without a timezone is a ValueError, even when the expiry has one."""
    with pytest.raises(ValueError, match="must carry a timezone"):
        feature(starts_at=dt.datetime(2026, 1, 1))  # noqa: DTZ001  the point of the test


def test_any_timezone_is_accepted():
    """Timestamps in any fixed offset are accepted, not only UTC."""
    override = feature(expires_at=dt.datetime(2099, 1, 1, tzinfo=BERLIN), starts_at=NOW)
    assert override.expires_at.utcoffset() == dt.timedelta(hours=1)


@pytest.mark.parametrize("value", [1, 0, None, "true"])
def test_feature_value_must_be_a_boolean(value):
    """A feature override's value is exactly True or False: not 1, 0, None or text."""
    with pytest.raises(ValueError, match="a feature override's value is true or false"):
        feature(value)


@pytest.mark.parametrize("value", [True, False])
def test_feature_value_accepts_both_booleans(value):
    """Both True (grant) and False (deny) are valid feature override values."""
    assert feature(value).value is value


@pytest.mark.parametrize("value", [0, 1, 10**12, None])
def test_limit_value_accepts_whole_numbers_and_unlimited(value):
    """A limit override takes 0 or more, or None for unlimited."""
    override = Override("s-1", "limit", "listings", value, "migration", LATER)
    assert override.value == value


@pytest.mark.parametrize("value", [True, False, -1])
def test_limit_value_rejects_booleans_and_negatives(value):
    """A limit override's value is not a boolean and not negative."""
    with pytest.raises(ValueError, match=r"whole number >= 0, or unlimited"):
        Override("s-1", "limit", "listings", value, "migration", LATER)


@pytest.mark.parametrize("value", [1.5, "5"])
def test_limit_value_rejects_non_integers(value):
    """A limit override's value that is not a whole number is a ValueError."""
    with pytest.raises(ValueError, match=r"whole number >= 0, or unlimited"):
        Override("s-1", "limit", "listings", value, "migration", LATER)


@pytest.mark.parametrize("value", [True, False, 0, "gold"])
def test_tier_override_takes_no_value(value):
    """A tier override names the tier in target; any value, even False or 0, is rejected."""
    with pytest.raises(ValueError, match="names the tier in 'target' and has no value"):
        Override("s-1", "tier", "gold", value, "contract", LATER)


def test_tier_override_without_value_is_valid():
    """A tier override with value None is valid and keeps its target."""
    assert Override("s-1", "tier", "gold", None, "contract", LATER).target == "gold"


def test_active_from_creation_when_no_start():
    """Without starts_at, an override is active at any time before its expiry."""
    override = feature()
    assert override.active_at(dt.datetime(1, 1, 1, tzinfo=dt.UTC))
    assert override.active_at(LATER - dt.timedelta(microseconds=1))


def test_start_is_inclusive():
    """An override is active exactly at starts_at, and not a microsecond before."""
    override = feature(starts_at=NOW)
    assert override.active_at(NOW)
    assert not override.active_at(NOW - dt.timedelta(microseconds=1))


def test_expiry_is_exclusive():
    """An override is no longer active exactly at expires_at."""
    override = feature()
    assert override.active_at(LATER - dt.timedelta(microseconds=1))
    assert not override.active_at(LATER)
    assert not override.active_at(LATER + dt.timedelta(days=1))


def test_active_window_compares_instants_across_timezones():
    """The window compares instants: 13:00+01:00 is the same moment as 12:00 UTC."""
    override = feature(expires_at=NOW.astimezone(BERLIN))
    assert override.expires_at.hour == 13
    assert not override.active_at(NOW)
    assert override.active_at(NOW - dt.timedelta(seconds=1))


def test_start_not_before_expiry_is_refused():
    """An override whose start is not before its expiry could never apply, so it is refused."""
    with pytest.raises(ValueError, match="start must be before its expiry"):
        feature(starts_at=LATER, expires_at=LATER)


@pytest.mark.parametrize(
    ("kind", "target", "value", "shown"),
    [
        ("feature", "promoted", True, "allowed"),
        ("feature", "promoted", False, "denied"),
        ("limit", "listings", 500, "500"),
        ("limit", "listings", 0, "0"),
        ("limit", "listings", None, "unlimited"),
        ("tier", "gold", None, "gold"),
    ],
)
def test_describe_value(kind, target, value, shown):
    """describe_value reads allowed/denied, the number or unlimited, or the tier name."""
    assert Override("s-1", kind, target, value, "r", LATER).describe_value() == shown
