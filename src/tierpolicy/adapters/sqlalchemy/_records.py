"""What the store returns: plain frozen dataclasses, detached from any session.

Callers never hold ORM objects, so nothing loads lazily after its session has closed
and nothing a caller does to a record reaches the database. Timestamps are aware UTC.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

from tierpolicy.engine._overrides import Override

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping

OverrideKind = Literal["feature", "limit", "tier"]

"""The expiry the engine is given for an override stored without one."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Audit:
    """Who performs a write, for the audit entry the store writes in the same transaction.

    Attributes:
        actor: The authenticated principal (a user or client id).
        request_id: The request that caused the write, to correlate with logs.
    """

    actor: str
    request_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SellerRecord:
    """A seller as stored.

    Attributes:
        seller_id: The seller's id.
        tier: The current tier.
        tier_since: When the seller entered the current tier.
        below_since: Since when the metrics have qualified only for a lower tier (the
            start of the downgrade grace period, the engine's ``seller.below_since``);
            ``None`` while they qualify for the current tier or above.
        attributes: The attributes policies read (``seller.*`` in conditions).
        created_at: When the seller was first stored.
        updated_at: When the row last changed.
    """

    seller_id: str
    tier: str
    tier_since: dt.datetime
    below_since: dt.datetime | None
    attributes: Mapping[str, object]
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSnapshot:
    """One ingested snapshot of a seller's metrics.

    Attributes:
        id: The snapshot's id.
        seller_id: Whose metrics.
        taken_at: When the metrics were measured.
        metrics: The values (``metrics.*`` in conditions).
    """

    id: int
    seller_id: str
    taken_at: dt.datetime
    metrics: Mapping[str, object]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TierChange:
    """One entry of a seller's tier history.

    Attributes:
        id: The entry's id.
        seller_id: Whose tier changed.
        from_tier: The tier before; ``None`` for the first assignment.
        to_tier: The tier after.
        reason: Why (a decision's message, or an admin's words).
        at: When the change took effect.
        policy_version: The policy version that decided it, when a policy did.
    """

    id: int
    seller_id: str
    from_tier: str | None
    to_tier: str
    reason: str
    at: dt.datetime
    policy_version: str | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OverrideRecord:
    """A stored override (see :class:`tierpolicy.Override` for what each kind means).

    Attributes:
        id: The override's id; decisions name it ``override:<id>``.
        seller_id: The seller it applies to.
        kind: ``feature``, ``limit`` or ``tier``.
        target: The feature, limit or tier name.
        value: ``True``/``False`` for a feature, a count or ``None`` (unlimited) for a
            limit, ``None`` for a tier.
        reason: Why it was granted.
        starts_at: When it starts applying, if not at once.
        expires_at: When it stops applying (exclusive); ``None`` for never.
        author: Who granted it.
        created_at: When it was stored.
    """

    id: int
    seller_id: str
    kind: OverrideKind
    target: str
    value: bool | int | None
    reason: str
    starts_at: dt.datetime | None
    expires_at: dt.datetime
    author: str
    created_at: dt.datetime

    def active_at(self, now: dt.datetime) -> bool:
        """Whether the override applies at ``now``."""
        return (self.starts_at is None or self.starts_at <= now) and now < self.expires_at

    def to_override(self) -> Override:
        """The engine's :class:`~tierpolicy.Override` for this record, ready for evaluation."""
        return Override(
            seller_id=self.seller_id,
            kind=self.kind,
            target=self.target,
            value=self.value,
            reason=self.reason,
            expires_at=self.expires_at,
            starts_at=self.starts_at,
            author=self.author,
            rule=f"override:{self.id}",
            source="store",
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PolicyVersionSummary:
    """A stored policy version, without its files.

    Attributes:
        id: The row's id.
        version: The policy set's short content hash (``PolicySet.version``).
        digest: Its full SHA-256 content hash (``PolicySet.digest``).
        author: Who uploaded it.
        created_at: When it was uploaded.
        activated_at: When it was last activated; kept after it is deactivated, so the
            most recently activated inactive version is the one a rollback returns to.
        active: Whether it is the active version (at most one is).
    """

    id: int
    version: str
    digest: str
    author: str
    created_at: dt.datetime
    activated_at: dt.datetime | None
    active: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PolicyVersionRecord(PolicyVersionSummary):
    """A stored policy version with its files, ready for ``tierpolicy.load_files(record.files)``.

    Attributes:
        files: The policy files: relative path to YAML text.
    """

    files: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One entry of the audit log.

    Attributes:
        id: The entry's id.
        actor: Who acted.
        action: What they did, e.g. ``override.create`` or ``policy.activate``.
        target: What they acted on, e.g. ``seller:s-1``, ``override:7``, ``policy:<version>``.
        at: When.
        before: The object before the action (``None`` when it did not exist).
        after: The object after the action (``None`` when it no longer exists).
        request_id: The request that caused it, if known.
    """

    id: int
    actor: str
    action: str
    target: str
    at: dt.datetime
    before: Mapping[str, object] | None
    after: Mapping[str, object] | None
    request_id: str | None
