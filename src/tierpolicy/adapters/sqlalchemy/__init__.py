"""The SQLAlchemy store: sellers, metrics, tier history, overrides, policy versions and the audit log.

Needs the ``sql`` extra (``pip install 'tierpolicy[sql]'``). SQLite by default,
PostgreSQL (psycopg 3) in production; the schema is migrated by the Alembic revisions
packaged here, from code. Every method runs in its own transaction and returns frozen
dataclasses; SQLAlchemy's and the drivers' errors are translated into
:class:`~tierpolicy.StoreError` (:class:`~tierpolicy.StoreUnavailableError` when the
database cannot be reached), with the original on ``__cause__``. See ``docs/store.md``.

Example::

    import tierpolicy
    from tierpolicy.adapters.sqlalchemy import Audit, Database, upgrade

    upgrade("sqlite:///tierpolicy.db")  # or Database.migrate(); a no-op when up to date
    db = Database.from_url("sqlite:///tierpolicy.db")
    db.upsert_seller("s-1", tier="bronze", attributes={"verified": True})
    db.record_metrics("s-1", {"orders_60d": 140, "rating": 4.7})

    policy = tierpolicy.load("policies/")
    db.add_policy_version(version=policy.version, digest=policy.digest, files={...}, author="ana")
    db.activate_policy_version(policy.version, audit=Audit(actor="ana"))

    overrides = [o.to_override() for o in db.list_overrides(seller_id="s-1")]
"""

from ._errors import ConflictError, NotFoundError
from ._migrate import VERSION_TABLE, current, downgrade, head, upgrade
from ._models import metadata
from ._records import (
    Audit,
    AuditEntry,
    MetricsSnapshot,
    OverrideKind,
    OverrideRecord,
    PolicyVersionRecord,
    PolicyVersionSummary,
    SellerRecord,
    TierChange,
)
from ._store import MAX_PAGE, Database, utcnow

__all__ = [
    "MAX_PAGE",
    "VERSION_TABLE",
    "Audit",
    "AuditEntry",
    "ConflictError",
    "Database",
    "MetricsSnapshot",
    "NotFoundError",
    "OverrideKind",
    "OverrideRecord",
    "PolicyVersionRecord",
    "PolicyVersionSummary",
    "SellerRecord",
    "TierChange",
    "current",
    "downgrade",
    "head",
    "metadata",
    "upgrade",
    "utcnow",
]
