"""The tables of the store, as SQLAlchemy 2.0 typed declarative models.

The migrations in ``migrations/versions/`` are written to match these models exactly
(a test runs Alembic's autogenerate comparison on SQLite and PostgreSQL and expects no
difference). Change both together: a new revision for every model change.

Timestamps are :class:`UTCDateTime`: timezone-aware UTC in Python on every database,
stored as ``timestamptz`` on PostgreSQL and as naive UTC text on SQLite (which has no
time zones). JSON columns use the generic ``JSON`` type (``json`` on PostgreSQL): the
store never queries inside them, so ``jsonb``'s indexing buys nothing, while ``json``
keeps a policy file's text byte for byte.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint and index names, so every database and every migration names them alike."""

ID_LENGTH = 128
"""Longest seller id, feature, limit or tier name the store accepts."""
NAME_LENGTH = 256
"""Longest actor, author, action or audit target."""

OVERRIDE_KINDS = ("feature", "limit", "tier")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware timestamp, always UTC in Python, on SQLite as on PostgreSQL.

    Naive datetimes are refused when written: a naive value's meaning depends on the
    machine's zone, and a store shared by replicas must not depend on that.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Convert to UTC; drop the zone for SQLite, whose text format cannot hold one."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            msg = f"naive datetime {value.isoformat()} refused: the store keeps timezone-aware UTC times"
            raise ValueError(msg)
        value = value.astimezone(dt.UTC)
        # SQLite compares timestamps as text: one zone, no suffix, keeps that order right.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:  # noqa: ARG002  part of the TypeDecorator interface
        """Return an aware UTC datetime whatever the database gave back."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _id_type() -> BigInteger:
    # 64-bit ids on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
    return BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """The declarative base of the store's models; its ``metadata`` holds every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {dt.datetime: UTCDateTime()}  # noqa: RUF012  SQLAlchemy reads it as a class attribute


metadata = Base.metadata
"""Every table of the store (what Alembic's autogenerate compares against)."""


class Seller(Base):
    """A seller: its current tier, since when, and the attributes policies read."""

    __tablename__ = "sellers"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    tier: Mapped[str] = mapped_column(String(ID_LENGTH))
    tier_since: Mapped[dt.datetime]
    # The start of the downgrade grace period (the engine's seller.below_since): when
    # the metrics first qualified only for a lower tier; NULL while they do not.
    below_since: Mapped[dt.datetime | None]
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class MetricsSnapshotRow(Base):
    """One snapshot of a seller's metrics, as ingested."""

    __tablename__ = "metrics_snapshots"
    __table_args__ = (
        Index("ix_metrics_snapshots_seller_id_taken_at", "seller_id", "taken_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_id_type(), primary_key=True)
    seller_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("sellers.id", ondelete="CASCADE"))
    taken_at: Mapped[dt.datetime]
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)


class TierHistoryRow(Base):
    """One change of a seller's tier (``from_tier`` is NULL for the first assignment)."""

    __tablename__ = "tier_history"
    __table_args__ = (
        Index("ix_tier_history_seller_id_at", "seller_id", "at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_id_type(), primary_key=True)
    seller_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("sellers.id", ondelete="CASCADE"))
    from_tier: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    to_tier: Mapped[str] = mapped_column(String(ID_LENGTH))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime]
    policy_version: Mapped[str | None] = mapped_column(String(16))


class OverrideRow(Base):
    """An admin's exception to the tier rules for one seller (the engine's ``Override``)."""

    __tablename__ = "overrides"
    __table_args__ = (
        CheckConstraint("kind IN ('feature', 'limit', 'tier')", name="kind"),
        CheckConstraint("starts_at IS NULL OR starts_at < expires_at", name="window"),
        Index("ix_overrides_seller_id_expires_at", "seller_id", "expires_at"),
        # Never reuse an id: decisions name an override by it (rule "override:<id>").
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_id_type(), primary_key=True)
    seller_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("sellers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(ID_LENGTH))
    # true/false for a feature, a count or NULL (unlimited) for a limit, NULL for a tier.
    value: Mapped[bool | int | None] = mapped_column(JSON(none_as_null=True))
    reason: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[dt.datetime | None]
    # Required, as in policy files: every exception to the tier rules ends.
    expires_at: Mapped[dt.datetime]
    author: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[dt.datetime]


class PolicyVersionRow(Base):
    """An uploaded policy bundle; at most one row is active, enforced by a partial unique index."""

    __tablename__ = "policy_versions"
    __table_args__ = (
        # A unique index over the rows WHERE active admits one such row: the database,
        # not the code, guarantees a single active version (both dialects support it).
        Index(
            "ux_policy_versions_single_active",
            "active",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_id_type(), primary_key=True)
    version: Mapped[str] = mapped_column(String(16), unique=True)
    digest: Mapped[str] = mapped_column(String(64))
    files: Mapped[dict[str, str]] = mapped_column(JSON)
    author: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[dt.datetime]
    # Kept when the version is deactivated: the latest activation of the inactive
    # versions is what a rollback returns to.
    activated_at: Mapped[dt.datetime | None]
    active: Mapped[bool] = mapped_column(Boolean, server_default=false())


class AuditRow(Base):
    """One admin action: who did what to which object, when, and the object before and after."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor_at", "actor", "at"),
        Index("ix_audit_log_target_at", "target", "at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_id_type(), primary_key=True)
    actor: Mapped[str] = mapped_column(String(NAME_LENGTH))
    action: Mapped[str] = mapped_column(String(NAME_LENGTH))
    target: Mapped[str] = mapped_column(String(NAME_LENGTH))
    at: Mapped[dt.datetime]
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    request_id: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
