"""The store's first schema: sellers, metrics, tier history, overrides, policy versions, audit log.

Written from Alembic's autogenerate output and reviewed: portable types only (the
models' ``UTCDateTime`` is a Python-side decorator over ``DateTime(timezone=True)``, so
the migration does not import the models and stays valid when they change), and
``false()`` rather than a dialect's spelling of the default.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False)


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _seller_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["seller_id"], ["sellers.id"], name=op.f(f"fk_{table}_seller_id_sellers"), ondelete="CASCADE"
    )


def upgrade() -> None:
    """Create every table of the store."""
    op.create_table(
        "sellers",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("tier", sa.String(length=128), nullable=False),
        _timestamp("tier_since"),
        _timestamp("below_since", nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sellers")),
    )
    op.create_table(
        "metrics_snapshots",
        _id(),
        sa.Column("seller_id", sa.String(length=128), nullable=False),
        _timestamp("taken_at"),
        sa.Column("metrics", sa.JSON(), nullable=False),
        _seller_fk("metrics_snapshots"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics_snapshots")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_metrics_snapshots_seller_id_taken_at", "metrics_snapshots", ["seller_id", "taken_at"])
    op.create_table(
        "tier_history",
        _id(),
        sa.Column("seller_id", sa.String(length=128), nullable=False),
        sa.Column("from_tier", sa.String(length=128), nullable=True),
        sa.Column("to_tier", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _timestamp("at"),
        sa.Column("policy_version", sa.String(length=16), nullable=True),
        _seller_fk("tier_history"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_history")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_tier_history_seller_id_at", "tier_history", ["seller_id", "at"])
    op.create_table(
        "overrides",
        _id(),
        sa.Column("seller_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.Column("value", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        _timestamp("starts_at", nullable=True),
        _timestamp("expires_at"),
        sa.Column("author", sa.String(length=256), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("kind IN ('feature', 'limit', 'tier')", name=op.f("ck_overrides_kind")),
        sa.CheckConstraint(
            "starts_at IS NULL OR starts_at < expires_at",
            name=op.f("ck_overrides_window"),
        ),
        _seller_fk("overrides"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_overrides")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_overrides_seller_id_expires_at", "overrides", ["seller_id", "expires_at"])
    op.create_table(
        "policy_versions",
        _id(),
        sa.Column("version", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("author", sa.String(length=256), nullable=False),
        _timestamp("created_at"),
        _timestamp("activated_at", nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_versions")),
        sa.UniqueConstraint("version", name=op.f("uq_policy_versions_version")),
        sqlite_autoincrement=True,
    )
    # At most one active version, enforced by the database itself.
    op.create_index(
        "ux_policy_versions_single_active",
        "policy_versions",
        ["active"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )
    op.create_table(
        "audit_log",
        _id(),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("action", sa.String(length=256), nullable=False),
        sa.Column("target", sa.String(length=256), nullable=False),
        _timestamp("at"),
        sa.Column("before", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("after", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("request_id", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor_at", "audit_log", ["actor", "at"])
    op.create_index("ix_audit_log_target_at", "audit_log", ["target", "at"])


def downgrade() -> None:
    """Drop every table of the store (their indexes go with them)."""
    for table in (
        "audit_log",
        "policy_versions",
        "overrides",
        "tier_history",
        "metrics_snapshots",
        "sellers",
    ):
        op.drop_table(table)
