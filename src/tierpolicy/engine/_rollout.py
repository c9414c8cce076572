r"""Deterministic percentage rollouts.

A seller's bucket for a feature is pinned forever as::

    digest = SHA - 256(b"tierpolicy/rollout/v1" + b"\\0" + feature + b"\\0" + seller_id)  # UTF-8
    bucket = int.from_bytes(digest[:8], "big") % 10_000  # basis points, 0..9999

and the seller is in the rollout when ``bucket < percentage * 100``. The bucket depends
only on the feature and seller id, so every process on every machine agrees, and raising
the percentage only ever adds sellers. (``2**64 % 10_000`` is 1,616, so the modulo bias
is below one part in ten to the fifteen.)
"""

from __future__ import annotations

import hashlib

BASIS_POINTS = 10_000
_PREFIX = b"tierpolicy/rollout/v1\x00"


def rollout_bucket(feature: str, seller_id: str) -> int:
    """Return the seller's pinned bucket for ``feature``, in basis points (0 to 9,999)."""
    digest = hashlib.sha256(
        _PREFIX + feature.encode() + b"\x00" + seller_id.encode("utf-8", "surrogatepass")
    ).digest()
    return int.from_bytes(digest[:8], "big") % BASIS_POINTS


def percent_to_basis_points(percent: float) -> int:
    """Convert a percentage with at most two decimals to basis points."""
    return round(percent * 100)
