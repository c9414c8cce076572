"""The store's repository layer: one method per question or change, each in its own transaction.

:class:`Database` wraps a synchronous SQLAlchemy engine (FastAPI runs sync endpoints in
a thread pool, so every method is safe to call from many threads at once). Methods
return frozen dataclasses from :mod:`._records`, never ORM objects. Writes that an
admin makes take an optional :class:`Audit`; the store then writes the audit entry,
with the object before and after, in the same transaction as the change, so a change
is never stored without its audit entry or the other way round.

Input is checked before it reaches the database, so SQLite and PostgreSQL refuse the
same things the same way (SQLite would store a 300-character tier name that
PostgreSQL refuses; PostgreSQL refuses a NUL character SQLite would keep): a bad
argument is a :class:`ValueError` (or :class:`TypeError` for a wrong type), a missing
row a :class:`NotFoundError`, a duplicate a :class:`ConflictError`, and a database that
cannot answer a :class:`~tierpolicy.StoreUnavailableError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from sqlalchemy import func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer, sessionmaker

from tierpolicy.engine._overrides import Override
from tierpolicy.engine._tiers import iso

from . import _migrate
from ._engine import WRITE, create, dumps
from ._errors import ConflictError, NotFoundError, redact, translated
from ._models import (
    ID_LENGTH,
    NAME_LENGTH,
    OVERRIDE_KINDS,
    AuditRow,
    MetricsSnapshotRow,
    OverrideRow,
    PolicyVersionRow,
    Seller,
    TierHistoryRow,
)
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

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

    from sqlalchemy.engine import URL, Engine

MAX_PAGE = 1000
"""The most rows one listing call returns."""
_CHUNK = 500  # ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits
_VERSION = re.compile(r"[0-9a-f]{16}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_ONE_TICK = dt.timedelta(microseconds=1)

_R = TypeVar("_R")


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC (the default clock)."""
    return dt.datetime.now(dt.UTC)


# --------------------------------------------------------------------------- checks


def _text(value: object, what: str, *, limit: int | None = None, empty: bool = False) -> str:
    if not isinstance(value, str):
        msg = f"{what} must be a string, not {type(value).__name__}"
        raise TypeError(msg)
    if not value and not empty:
        msg = f"{what} must not be empty"
        raise ValueError(msg)
    if limit is not None and len(value) > limit:
        msg = f"{what} is {len(value)} characters long; the most is {limit}"
        raise ValueError(msg)
    if "\x00" in value:
        msg = f"{what} must not contain a NUL character"
        raise ValueError(msg)
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        msg = f"{what} is not valid Unicode text: {exc.reason}"
        raise ValueError(msg) from exc
    return value


def _aware(value: object, what: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        msg = f"{what} must be a datetime, not {type(value).__name__}"
        raise TypeError(msg)
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"{what} must be timezone-aware; got the naive {value.isoformat()}"
        raise ValueError(msg)
    return value.astimezone(dt.UTC)


def _json_object(value: object, what: str) -> dict[str, Any]:
    """``value`` as the database will give it back (tuples become lists, keys strings)."""
    if not isinstance(value, Mapping):
        msg = f"{what} must be a mapping (a JSON object), not {type(value).__name__}"
        raise TypeError(msg)
    try:
        encoded = dumps(dict(value))
        encoded.encode()
    except TypeError as exc:
        msg = f"{what} must hold only JSON values (objects, arrays, strings, numbers, booleans, null): {exc}"
        raise TypeError(msg) from exc
    except ValueError as exc:  # NaN or infinity, a cycle, a lone surrogate
        msg = f"{what} cannot be stored as JSON: {exc}"
        raise ValueError(msg) from exc
    loaded: dict[str, Any] = json.loads(encoded)
    return loaded


def _page(limit: int, offset: int = 0) -> None:
    if not 1 <= limit <= MAX_PAGE:
        msg = f"limit must be between 1 and {MAX_PAGE}; got {limit}"
        raise ValueError(msg)
    if offset < 0:
        msg = f"offset must be 0 or more; got {offset}"
        raise ValueError(msg)


def _chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    unique = sorted({_text(i, "a seller id", limit=ID_LENGTH) for i in ids})
    for start in range(0, len(unique), _CHUNK):
        yield unique[start : start + _CHUNK]


# --------------------------------------------------------------------------- rows to records


def _seller(row: Seller) -> SellerRecord:
    return SellerRecord(
        seller_id=row.id,
        tier=row.tier,
        tier_since=row.tier_since,
        below_since=row.below_since,
        attributes=row.attributes,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _snapshot(row: MetricsSnapshotRow) -> MetricsSnapshot:
    return MetricsSnapshot(id=row.id, seller_id=row.seller_id, taken_at=row.taken_at, metrics=row.metrics)


def _change(row: TierHistoryRow) -> TierChange:
    return TierChange(
        id=row.id,
        seller_id=row.seller_id,
        from_tier=row.from_tier,
        to_tier=row.to_tier,
        reason=row.reason,
        at=row.at,
        policy_version=row.policy_version,
    )


def _override(row: OverrideRow) -> OverrideRecord:
    return OverrideRecord(
        id=row.id,
        seller_id=row.seller_id,
        kind=cast("OverrideKind", row.kind),  # the column's CHECK constraint admits only the three
        target=row.target,
        value=row.value,
        reason=row.reason,
        starts_at=row.starts_at,
        expires_at=row.expires_at,
        author=row.author,
        created_at=row.created_at,
    )


def _summary(row: PolicyVersionRow) -> PolicyVersionSummary:
    return PolicyVersionSummary(
        id=row.id,
        version=row.version,
        digest=row.digest,
        author=row.author,
        created_at=row.created_at,
        activated_at=row.activated_at,
        active=row.active,
    )


def _policy(row: PolicyVersionRow) -> PolicyVersionRecord:
    return PolicyVersionRecord(
        id=row.id,
        version=row.version,
        digest=row.digest,
        author=row.author,
        created_at=row.created_at,
        activated_at=row.activated_at,
        active=row.active,
        files=row.files,
    )


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        actor=row.actor,
        action=row.action,
        target=row.target,
        at=row.at,
        before=row.before,
        after=row.after,
        request_id=row.request_id,
    )


def as_json(record: object) -> dict[str, Any]:
    """A record as a JSON object (timestamps as RFC 3339 UTC), as the audit log stores it."""
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        msg = f"expected a record, not {type(record).__name__}"
        raise TypeError(msg)
    return {
        field.name: iso(value) if isinstance(value, dt.datetime) else value
        for field in dataclasses.fields(record)
        for value in (getattr(record, field.name),)
    }


# --------------------------------------------------------------------------- the store


class Database:
    """The store: sellers, metrics, tier history, overrides, policy versions and the audit log.

    Args:
        engine: A SQLAlchemy engine, preferably from :meth:`from_url` (which sets SQLite
            up for concurrent use and gives PostgreSQL the psycopg driver).
        now: The clock: returns the current timezone-aware time. Every timestamp the
            store writes without being given one comes from it.

    Attributes:
        engine: The engine.
        url: The database URL with its password hidden, for logs and messages.
    """

    def __init__(self, engine: Engine, *, now: Callable[[], dt.datetime] = utcnow) -> None:
        self.engine = engine
        self.url = redact(engine.url)
        self._secret = engine.url.password
        self._now = now
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(
        cls,
        url: str | URL,
        *,
        now: Callable[[], dt.datetime] = utcnow,
        **options: Any,  # noqa: ANN401  passed through to create_engine
    ) -> Self:
        """A store on the database ``url`` names; no connection is made until the first call.

        Args:
            url: ``sqlite:///path/to/file.db`` (relative to the working directory;
                four slashes for an absolute path), ``sqlite://`` (in memory, one
                thread), ``postgresql://user:password@host/db`` (the psycopg 3 driver
                is added), ``postgres://`` or ``postgresql+psycopg://``.
            now: The clock (see the class).
            **options: Passed to :func:`sqlalchemy.create_engine` (``pool_size=20``...).

        Raises:
            StoreError: The URL does not parse or names another database.
        """
        return cls(create(url, **options), now=now)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    # ------------------------------------------------------------------ plumbing

    def _clock(self) -> dt.datetime:
        return _aware(self._now(), "the clock's time")

    def _when(self, value: dt.datetime | None, what: str) -> dt.datetime:
        return self._clock() if value is None else _aware(value, what)

    @contextlib.contextmanager
    def _transaction(self, *, write: bool = False) -> Iterator[Session]:
        with translated(self.url, secret=self._secret), self._sessions() as session, session.begin():
            if write:
                # The first use of the session procures its connection: this option
                # makes SQLite begin with BEGIN IMMEDIATE (see _engine).
                session.connection(execution_options={WRITE: True})
            yield session

    def _read(self, query: Callable[[Session], _R]) -> _R:
        with self._transaction() as session:
            return query(session)

    @staticmethod
    def _audit(
        session: Session,
        audit: Audit | None,
        action: str,
        target: str,
        before: Mapping[str, object] | None,
        after: Mapping[str, object] | None,
        at: dt.datetime,
    ) -> AuditRow | None:
        if audit is None:
            return None
        row = AuditRow(
            actor=_text(audit.actor, "the audit actor", limit=NAME_LENGTH),
            action=action,
            target=target,
            at=at,
            before=None if before is None else _json_object(before, "before"),
            after=None if after is None else _json_object(after, "after"),
            request_id=None
            if audit.request_id is None
            else _text(audit.request_id, "the request id", limit=NAME_LENGTH),
        )
        session.add(row)
        return row

    @staticmethod
    def _seller_row(session: Session, seller_id: str, *, lock: bool = False) -> Seller:
        row = session.get(Seller, _text(seller_id, "the seller id", limit=ID_LENGTH), with_for_update=lock)
        if row is None:
            raise NotFoundError(f"no seller {seller_id!r} in the store")
        return row

    # ------------------------------------------------------------------ schema and health

    def migrate(self, revision: str = "head") -> None:
        """Apply the migrations up to ``revision`` (see :func:`upgrade`)."""
        _migrate.upgrade(self.engine, revision)

    def revision(self) -> str | None:
        """The database's schema revision, ``None`` before the first migration."""
        return _migrate.current(self.engine)

    def ping(self) -> None:
        """Ask the database a trivial question (for readiness probes).

        Raises:
            StoreUnavailableError: It does not answer.
        """
        self._read(lambda session: session.execute(text("SELECT 1")).scalar_one())

    # ------------------------------------------------------------------ sellers

    def get_seller(self, seller_id: str) -> SellerRecord:
        """The seller ``seller_id``.

        Raises:
            NotFoundError: There is no such seller.
        """
        return self._read(lambda session: _seller(self._seller_row(session, seller_id)))

    def get_sellers(self, seller_ids: Iterable[str]) -> dict[str, SellerRecord]:
        """The sellers among ``seller_ids`` that exist, by id (unknown ids are left out)."""

        def query(session: Session) -> dict[str, SellerRecord]:
            found: dict[str, SellerRecord] = {}
            for chunk in _chunks(seller_ids):
                for row in session.scalars(select(Seller).where(Seller.id.in_(chunk))):
                    found[row.id] = _seller(row)
            return found

        return self._read(query)

    def list_sellers(self, *, after: str | None = None, limit: int = 100) -> list[SellerRecord]:
        """Sellers in id order, ``limit`` at a time.

        Pages by key rather than by offset: pass the last id of a page as ``after`` to
        get the next one. A walk over every seller that changes sellers as it goes
        (tier re-evaluation) neither skips nor repeats one.
        """
        _page(limit)
        statement = select(Seller).order_by(Seller.id).limit(limit)
        if after is not None:
            statement = statement.where(Seller.id > _text(after, "after", limit=ID_LENGTH))
        return self._read(lambda session: [_seller(row) for row in session.scalars(statement)])

    def upsert_seller(
        self,
        seller_id: str,
        *,
        tier: str,
        attributes: Mapping[str, object] | None = None,
        reason: str | None = None,
        policy_version: str | None = None,
        audit: Audit | None = None,
    ) -> SellerRecord:
        """Create the seller, or update its attributes and tier.

        A new seller's first tier is written to the tier history (``from_tier`` None);
        a changed tier is applied as :meth:`apply_tier_change` does. Nothing is written
        (and no audit entry) when nothing changes.

        Args:
            seller_id: The seller's id.
            tier: The tier to have.
            attributes: The attributes to have; ``None`` keeps the stored ones (or ``{}``
                for a new seller). Replaced whole, never merged.
            reason: The tier history's reason when the tier is written; by default
                ``seller registered`` for a new seller, ``tier set directly`` for a change.
            policy_version: The policy version behind the tier, if any.
            audit: Who does it; writes a ``seller.upsert`` audit entry with the change.

        Raises:
            ValueError: An argument is malformed (e.g. attributes that are not JSON).
        """
        _text(seller_id, "the seller id", limit=ID_LENGTH)
        _text(tier, "the tier", limit=ID_LENGTH)
        if reason is not None:
            _text(reason, "the reason")
        version = _policy_version_ref(policy_version)
        new_attributes = None if attributes is None else _json_object(attributes, "the attributes")
        with self._transaction(write=True) as session:
            now = self._clock()
            insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
            created = session.execute(
                insert(Seller)
                .values(
                    id=seller_id,
                    tier=tier,
                    tier_since=now,
                    below_since=None,
                    attributes=new_attributes or {},
                    created_at=now,
                    updated_at=now,
                )
                # Two callers registering one seller at once: one inserts, the other updates.
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(Seller.id)
            ).first()
            row = self._seller_row(session, seller_id, lock=True)
            if created is not None:
                before = None
                session.add(
                    TierHistoryRow(
                        seller_id=seller_id,
                        from_tier=None,
                        to_tier=tier,
                        reason=reason or "seller registered",
                        at=now,
                        policy_version=version,
                    )
                )
            else:
                before = as_json(_seller(row))
                changed = False
                if new_attributes is not None and new_attributes != row.attributes:
                    row.attributes = new_attributes
                    changed = True
                if tier != row.tier:
                    _set_tier(session, row, tier, reason or "tier set directly", version, now, now)
                    changed = True
                if not changed:
                    return _seller(row)
                row.updated_at = now
            session.flush()
            record = _seller(row)
            self._audit(session, audit, "seller.upsert", f"seller:{seller_id}", before, as_json(record), now)
            return record

    def mark_below(self, seller_id: str, *, since: dt.datetime | None = None) -> SellerRecord:
        """Record that the seller's metrics qualify only for a lower tier, starting the grace period.

        Idempotent: a start already recorded is kept, so re-evaluating every day does
        not keep postponing the downgrade.

        Args:
            seller_id: The seller.
            since: When the grace period started; now by default.

        Raises:
            NotFoundError: There is no such seller.
        """
        with self._transaction(write=True) as session:
            now = self._clock()
            start = now if since is None else _aware(since, "since")
            row = self._seller_row(session, seller_id, lock=True)
            if row.below_since is None:
                row.below_since = start
                row.updated_at = now
            return _seller(row)

    def clear_below(self, seller_id: str) -> SellerRecord:
        """Record that the seller's metrics qualify for its tier again, ending any grace period.

        Raises:
            NotFoundError: There is no such seller.
        """
        with self._transaction(write=True) as session:
            row = self._seller_row(session, seller_id, lock=True)
            if row.below_since is not None:
                row.below_since = None
                row.updated_at = self._clock()
            return _seller(row)

    # ------------------------------------------------------------------ tiers

    def apply_tier_change(
        self,
        seller_id: str,
        to_tier: str,
        *,
        reason: str,
        policy_version: str | None = None,
        at: dt.datetime | None = None,
        audit: Audit | None = None,
    ) -> TierChange | None:
        """Move the seller to ``to_tier`` and write the tier history, atomically.

        Idempotent: when the seller already is in ``to_tier`` nothing is written and
        ``None`` is returned, so re-evaluating twice records each change once. The
        seller's row is locked meanwhile, so concurrent calls for one seller queue.
        The grace period (``below_since``) ends with the change.

        Args:
            seller_id: The seller.
            to_tier: The new tier.
            reason: Why (e.g. the tier decision's message).
            policy_version: The policy version that decided it.
            at: When the change takes effect; now by default.
            audit: Who does it; writes a ``tier.change`` audit entry.

        Returns:
            The history entry written, or ``None`` when the tier was already ``to_tier``.

        Raises:
            NotFoundError: There is no such seller.
        """
        _text(to_tier, "the tier", limit=ID_LENGTH)
        _text(reason, "the reason")
        version = _policy_version_ref(policy_version)
        with self._transaction(write=True) as session:
            now = self._clock()
            when = now if at is None else _aware(at, "at")
            row = self._seller_row(session, seller_id, lock=True)
            if row.tier == to_tier:
                return None
            before = {"tier": row.tier, "tier_since": iso(row.tier_since)}
            entry = _set_tier(session, row, to_tier, reason, version, when, now)
            session.flush()
            change = _change(entry)
            after = {"tier": to_tier, "tier_since": iso(when), "reason": reason, "policy_version": version}
            self._audit(session, audit, "tier.change", f"seller:{row.id}", before, after, now)
            return change

    def tier_history(self, seller_id: str, *, limit: int = 100) -> list[TierChange]:
        """The seller's tier changes, newest first (empty for an unknown seller)."""
        _page(limit)
        statement = (
            select(TierHistoryRow)
            .where(TierHistoryRow.seller_id == _text(seller_id, "the seller id", limit=ID_LENGTH))
            .order_by(TierHistoryRow.at.desc(), TierHistoryRow.id.desc())
            .limit(limit)
        )
        return self._read(lambda session: [_change(row) for row in session.scalars(statement)])

    # ------------------------------------------------------------------ metrics

    def record_metrics(
        self, seller_id: str, metrics: Mapping[str, object], *, taken_at: dt.datetime | None = None
    ) -> MetricsSnapshot:
        """Store a snapshot of the seller's metrics.

        Args:
            seller_id: The seller.
            metrics: The values, a JSON object (finite numbers only).
            taken_at: When they were measured; now by default.

        Raises:
            NotFoundError: There is no such seller.
            ValueError: The metrics cannot be stored as JSON.
        """
        values = _json_object(metrics, "the metrics")
        with self._transaction(write=True) as session:
            when = self._when(taken_at, "taken_at")
            row = self._seller_row(session, seller_id)
            snapshot = MetricsSnapshotRow(seller_id=row.id, taken_at=when, metrics=values)
            session.add(snapshot)
            session.flush()
            return _snapshot(snapshot)

    def latest_metrics(self, seller_id: str) -> MetricsSnapshot | None:
        """The seller's most recently taken snapshot, or ``None`` when there is none."""
        return self.latest_metrics_for([seller_id]).get(seller_id)

    def latest_metrics_for(self, seller_ids: Iterable[str]) -> dict[str, MetricsSnapshot]:
        """The most recently taken snapshot of each seller that has one, by seller id.

        One query per 500 sellers, for re-evaluating many sellers at once. Of two
        snapshots taken at the same time, the one stored last wins.
        """

        def query(session: Session) -> dict[str, MetricsSnapshot]:
            found: dict[str, MetricsSnapshot] = {}
            for chunk in _chunks(seller_ids):
                rank = (
                    func.row_number()
                    .over(
                        partition_by=MetricsSnapshotRow.seller_id,
                        order_by=(MetricsSnapshotRow.taken_at.desc(), MetricsSnapshotRow.id.desc()),
                    )
                    .label("rank")
                )
                ranked = (
                    select(MetricsSnapshotRow.id, rank)
                    .where(MetricsSnapshotRow.seller_id.in_(chunk))
                    .subquery()
                )
                latest = select(MetricsSnapshotRow).join(ranked, MetricsSnapshotRow.id == ranked.c.id)
                for row in session.scalars(latest.where(ranked.c.rank == 1)):
                    found[row.seller_id] = _snapshot(row)
            return found

        return self._read(query)

    # ------------------------------------------------------------------ overrides

    def create_override(
        self,
        seller_id: str,
        *,
        kind: OverrideKind,
        target: str,
        value: bool | int | None = None,
        reason: str,
        author: str,
        expires_at: dt.datetime,
        starts_at: dt.datetime | None = None,
        audit: Audit | None = None,
    ) -> OverrideRecord:
        """Store an override, checked by the engine's own rules first.

        Args:
            seller_id: The seller it applies to.
            kind: ``feature``, ``limit`` or ``tier``.
            target: The feature, limit or tier name.
            value: ``True``/``False`` for a feature; a count, or ``None`` for unlimited,
                for a limit; ``None`` for a tier.
            reason: Why it is granted (shown in decisions).
            author: Who grants it.
            expires_at: When it stops applying (required, as in policy files).
            starts_at: When it starts applying; ``None`` for at once.
            audit: Who does it; writes an ``override.create`` audit entry.

        Raises:
            NotFoundError: There is no such seller.
            ValueError: The override is malformed (a feature value that is not a
                boolean, a start after the expiry, an expiry already past...).
        """
        if kind not in OVERRIDE_KINDS:
            msg = f"an override's kind is one of {', '.join(OVERRIDE_KINDS)}; got {kind!r}"
            raise ValueError(msg)
        _text(target, "the target", limit=ID_LENGTH)
        _text(reason, "the reason")
        _text(author, "the author", limit=NAME_LENGTH, empty=True)
        expires = _aware(expires_at, "expires_at")
        starts = None if starts_at is None else _aware(starts_at, "starts_at")
        # The engine's Override checks kind, value and window exactly as evaluation will.
        Override(
            seller_id=seller_id,
            kind=kind,
            target=target,
            value=value,
            reason=reason,
            expires_at=expires,
            starts_at=starts,
            author=author,
        )
        with self._transaction(write=True) as session:
            now = self._clock()
            if expires <= now:
                msg = f"the override would expire at {iso(expires)}, which is not after now ({iso(now)})"
                raise ValueError(msg)
            self._seller_row(session, seller_id)
            row = OverrideRow(
                seller_id=seller_id,
                kind=kind,
                target=target,
                value=value,
                reason=reason,
                starts_at=starts,
                expires_at=expires,
                author=author,
                created_at=now,
            )
            session.add(row)
            session.flush()
            record = _override(row)
            self._audit(session, audit, "override.create", f"override:{row.id}", None, as_json(record), now)
            return record

    def get_override(self, override_id: int) -> OverrideRecord:
        """The override ``override_id``, expired or not.

        Raises:
            NotFoundError: There is no such override.
        """

        def query(session: Session) -> OverrideRecord:
            row = session.get(OverrideRow, override_id)
            if row is None:
                raise NotFoundError(f"no override {override_id} in the store")
            return _override(row)

        return self._read(query)

    def list_overrides(
        self, *, seller_id: str | None = None, now: dt.datetime | None = None
    ) -> list[OverrideRecord]:
        """The overrides that have not expired at ``now``, oldest first.

        Oldest first is the order the engine's merge rule expects: for each target the
        last active override wins, so the newest grant does. Overrides that start
        later are included (the engine applies them from their start).

        Args:
            seller_id: Only this seller's; everyone's by default.
            now: The time expiry is judged at; the store's clock by default.
        """
        statement = select(OverrideRow).order_by(OverrideRow.created_at, OverrideRow.id)
        if seller_id is not None:
            statement = statement.where(
                OverrideRow.seller_id == _text(seller_id, "the seller id", limit=ID_LENGTH)
            )
        when = self._when(now, "now")
        statement = statement.where(OverrideRow.expires_at > when)
        return self._read(lambda session: [_override(row) for row in session.scalars(statement)])

    def delete_override(self, override_id: int, *, audit: Audit | None = None) -> OverrideRecord:
        """Delete the override ``override_id`` and return what it was.

        Args:
            override_id: The override.
            audit: Who does it; writes an ``override.delete`` audit entry.

        Raises:
            NotFoundError: There is no such override.
        """
        with self._transaction(write=True) as session:
            row = session.get(OverrideRow, override_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no override {override_id} in the store")
            record = _override(row)
            session.delete(row)
            self._audit(
                session,
                audit,
                "override.delete",
                f"override:{override_id}",
                as_json(record),
                None,
                self._clock(),
            )
            return record

    # ------------------------------------------------------------------ policy versions

    def add_policy_version(
        self,
        *,
        version: str,
        digest: str,
        files: Mapping[str, str],
        author: str,
        audit: Audit | None = None,
    ) -> PolicyVersionRecord:
        """Store an uploaded policy bundle, inactive.

        Validate the bundle with the engine first (``tierpolicy.load_files(files)``)
        and pass its ``version`` and ``digest``: the store checks their form, not the
        policies.

        Args:
            version: The set's short hash, 16 lowercase hex digits (``PolicySet.version``).
            digest: The set's SHA-256, 64 lowercase hex digits, starting with ``version``.
            files: Relative path to YAML text.
            author: Who uploads it.
            audit: Who does it; writes a ``policy.add`` audit entry.

        Raises:
            ConflictError: This version is already stored.
            ValueError: The version, digest or files are malformed.
        """
        _version(version)
        if not _DIGEST.fullmatch(digest) or not digest.startswith(version):
            msg = "the digest must be the set's SHA-256 in 64 lowercase hex digits, starting with its version"
            raise ValueError(msg)
        bundle = _json_object(files, "the files")
        if not bundle or not all(isinstance(content, str) for content in bundle.values()):
            msg = "the files must map each relative path to its text, and there must be at least one"
            raise ValueError(msg)
        _text(author, "the author", limit=NAME_LENGTH, empty=True)
        with self._transaction(write=True) as session:
            now = self._clock()
            row = PolicyVersionRow(
                version=version,
                digest=digest,
                files=bundle,
                author=author,
                created_at=now,
                activated_at=None,
                active=False,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:
                raise ConflictError(f"policy version {version} is already stored") from exc
            record = _policy(row)
            self._audit(session, audit, "policy.add", f"policy:{version}", None, as_json(_summary(row)), now)
            return record

    def get_policy_version(self, version: str) -> PolicyVersionRecord:
        """The stored version ``version``, with its files.

        Raises:
            NotFoundError: There is no such version.
        """

        def query(session: Session) -> PolicyVersionRecord:
            return _policy(_version_row(session, version))

        return self._read(query)

    def active_policy_version(self) -> PolicyVersionRecord | None:
        """The active version with its files, or ``None`` before the first activation."""

        def query(session: Session) -> PolicyVersionRecord | None:
            row = session.scalars(select(PolicyVersionRow).where(PolicyVersionRow.active)).one_or_none()
            return None if row is None else _policy(row)

        return self._read(query)

    def list_policy_versions(self, *, limit: int = 100, offset: int = 0) -> list[PolicyVersionSummary]:
        """Stored versions without their files, newest upload first."""
        _page(limit, offset)
        statement = (
            select(PolicyVersionRow)
            .options(defer(PolicyVersionRow.files))
            .order_by(PolicyVersionRow.created_at.desc(), PolicyVersionRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return self._read(lambda session: [_summary(row) for row in session.scalars(statement)])

    def activate_policy_version(self, version: str, *, audit: Audit | None = None) -> PolicyVersionRecord:
        """Make ``version`` the active version, deactivating the previous one in the same transaction.

        Activations are serialised (a table lock on PostgreSQL, the write lock on
        SQLite), so concurrent activations end with exactly one active version: the
        last to commit. Activating the active version writes nothing.

        Args:
            version: The version to activate.
            audit: Who does it; writes a ``policy.activate`` audit entry.

        Raises:
            NotFoundError: There is no such version.
        """
        with self._transaction(write=True) as session:
            _lock_versions(session)
            return self._activate(session, _version_row(session, version), "policy.activate", audit)

    def rollback_policy_version(self, *, audit: Audit | None = None) -> PolicyVersionRecord:
        """Activate again the version that was active before the current one.

        "Before" is the inactive version activated most recently, so two rollbacks in a
        row return to where they started (as ``kubectl rollout undo`` does).

        Args:
            audit: Who does it; writes a ``policy.rollback`` audit entry.

        Raises:
            NotFoundError: No other version was ever active.
        """
        with self._transaction(write=True) as session:
            _lock_versions(session)
            previous = session.scalars(
                select(PolicyVersionRow)
                .where(~PolicyVersionRow.active, PolicyVersionRow.activated_at.is_not(None))
                .order_by(PolicyVersionRow.activated_at.desc(), PolicyVersionRow.id.desc())
                .limit(1)
            ).first()
            if previous is None:
                raise NotFoundError("no previously active policy version to roll back to")
            return self._activate(session, previous, "policy.rollback", audit)

    def _activate(
        self, session: Session, target: PolicyVersionRow, action: str, audit: Audit | None
    ) -> PolicyVersionRecord:
        if target.active:
            return _policy(target)
        now = self._clock()
        current = session.scalars(select(PolicyVersionRow).where(PolicyVersionRow.active)).one_or_none()
        latest = session.scalar(select(func.max(PolicyVersionRow.activated_at)))
        # Activation times strictly increase, whatever the replicas' clocks say, so the
        # version a rollback returns to is never ambiguous.
        stamp = now if latest is None or now > latest else latest + _ONE_TICK
        if current is not None:
            current.active = False
            # The partial unique index admits one active row at any moment: the old one
            # must be written off before the new one is written on.
            session.flush()
        target.active = True
        target.activated_at = stamp
        session.flush()
        before = {"active_version": None if current is None else current.version}
        self._audit(
            session,
            audit,
            action,
            f"policy:{target.version}",
            before,
            {"active_version": target.version},
            now,
        )
        return _policy(target)

    # ------------------------------------------------------------------ audit

    def append_audit(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        before: Mapping[str, object] | None = None,
        after: Mapping[str, object] | None = None,
        request_id: str | None = None,
        at: dt.datetime | None = None,
    ) -> AuditEntry:
        """Write an audit entry for an action the store's own methods do not audit.

        Args:
            actor: Who acted.
            action: What they did (``dotted.name`` by convention).
            target: What they acted on (``kind:id`` by convention).
            before: The object before, as JSON.
            after: The object after, as JSON.
            request_id: The request that caused it.
            at: When; now by default.
        """
        _text(action, "the action", limit=NAME_LENGTH)
        _text(target, "the audit target", limit=NAME_LENGTH)
        with self._transaction(write=True) as session:
            when = self._when(at, "at")
            row = self._audit(
                session, Audit(actor=actor, request_id=request_id), action, target, before, after, when
            )
            session.flush()
            return _entry(cast("AuditRow", row))

    def list_audit(
        self,
        *,
        actor: str | None = None,
        target: str | None = None,
        action: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """Audit entries, newest first, optionally only those of one actor, target or action."""
        _page(limit, offset)
        statement = (
            select(AuditRow).order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit).offset(offset)
        )
        if actor is not None:
            statement = statement.where(AuditRow.actor == actor)
        if target is not None:
            statement = statement.where(AuditRow.target == target)
        if action is not None:
            statement = statement.where(AuditRow.action == action)
        return self._read(lambda session: [_entry(row) for row in session.scalars(statement)])


# --------------------------------------------------------------------------- helpers


def _version(version: object) -> str:
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        msg = f"the policy version must be 16 lowercase hex digits; got {version!r}"
        raise ValueError(msg)
    return version


def _policy_version_ref(version: str | None) -> str | None:
    return None if version is None else _version(version)


def _set_tier(
    session: Session,
    row: Seller,
    tier: str,
    reason: str,
    version: str | None,
    at: dt.datetime,
    now: dt.datetime,
) -> TierHistoryRow:
    entry = TierHistoryRow(
        seller_id=row.id, from_tier=row.tier, to_tier=tier, reason=reason, at=at, policy_version=version
    )
    session.add(entry)
    row.tier = tier
    row.tier_since = at
    row.below_since = None
    row.updated_at = now
    return entry


def _version_row(session: Session, version: str) -> PolicyVersionRow:
    row = session.scalars(select(PolicyVersionRow).where(PolicyVersionRow.version == version)).one_or_none()
    if row is None:
        raise NotFoundError(f"no policy version {version!r} in the store")
    return row


def _lock_versions(session: Session) -> None:
    # SQLite's write transaction (BEGIN IMMEDIATE) already excludes other writers;
    # PostgreSQL needs a lock that conflicts with itself, or two activations could each
    # deactivate the old row and then collide on the single-active index.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE policy_versions IN SHARE ROW EXCLUSIVE MODE"))
