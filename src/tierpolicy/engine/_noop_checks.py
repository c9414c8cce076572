"""Rollouts and overrides in a Tiers document that change nothing any seller gets.

Each function returns a message and a fix hint when the entry is a no-op, else ``None``;
the loader positions and reports them (TP430, TP431), as warnings: the set still decides
correctly, but the entry misleads whoever reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._rollout import BASIS_POINTS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._overrides import Override
    from ._tiers import CompiledFeature, CompiledLimit

__all__ = ["override_no_op", "rollout_no_op"]


def rollout_no_op(feature: str, percent: float) -> tuple[str, str] | None:
    """Whether a feature's ``rollout`` is 0 or 100, which no rollout is needed to say.

    Args:
        feature: The feature's name.
        percent: The rollout percentage as written.

    Returns:
        ``(message, hint)`` for a no-op rollout, else ``None``.
    """
    if percent >= 100:
        return (
            f"'rollout: 100' gives feature {feature!r} to every seller, as no rollout does",
            "remove 'rollout' now that the rollout is complete",
        )
    if percent <= 0:
        return (
            f"'rollout: 0' gives feature {feature!r} to no seller (only overrides grant it)",
            "to switch the feature off use 'enabled: false'; to start a rollout give a percentage above 0",
        )
    return None


def override_no_op(
    override: Override,
    features: Mapping[str, CompiledFeature],
    limits: Mapping[str, CompiledLimit],
) -> tuple[str, str] | None:
    """Whether a feature or limit override gives what every tier already gives, or nothing.

    Only cases decidable without knowing the seller's tier are reported: a limit override
    equal to the limit's value in every tier; a feature override of a feature switched off
    with ``enabled: false`` (the kill switch beats overrides); and an override allowing a
    feature every tier gets with no condition and no partial rollout.

    Args:
        override: The compiled override.
        features: The compiled features, by name.
        limits: The compiled limits, by name.

    Returns:
        ``(message, hint)`` for a no-op override, else ``None``.
    """
    if override.kind == "limit" and override.target in limits:
        values = set(limits[override.target].values)
        if values == {override.value}:
            shown = override.describe_value()
            return (
                f"this override sets limit {override.target!r} to {shown}, which every tier already gets",
                "remove the override, or give the seller a different value",
            )
    if override.kind == "feature" and override.target in features:
        feature = features[override.target]
        if not feature.enabled:
            return (
                (
                    f"this override of feature {override.target!r} never applies: the feature is "
                    "switched off with 'enabled: false', which beats overrides"
                ),
                "remove the override, or switch the feature back on",
            )
        everyone = (
            all(feature.grants)
            and feature.condition is None
            and (feature.rollout_bp is None or feature.rollout_bp >= BASIS_POINTS)
        )
        if override.value is True and everyone:
            return (
                (
                    f"this override allows feature {override.target!r}, which every tier already "
                    "gets with no condition"
                ),
                "remove the override",
            )
    return None
