"""The packaged Alembic migrations of the SQL store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from tierpolicy import StoreError, StoreUnavailableError
from tierpolicy.adapters.sqlalchemy import (
    VERSION_TABLE,
    Database,
    _migrate,
    current,
    downgrade,
    head,
    metadata,
    upgrade,
)
from tierpolicy.adapters.sqlalchemy._engine import create

TABLES = {"sellers", "metrics_snapshots", "tier_history", "overrides", "policy_versions", "audit_log"}


def tables(url: str) -> set[str]:
    """The table names in the database at ``url``."""
    engine = create(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def differences(url: str, target: sa.MetaData) -> list[object]:
    """What Alembic's autogenerate finds between the database and ``target``."""
    engine = create(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            return list(compare_metadata(context, target))
    finally:
        engine.dispose()


def test_head_is_the_only_revision_and_its_file_ships_in_the_package():
    """The packaged environment has one linear history whose files live inside the package directory."""
    script = ScriptDirectory.from_config(_migrate.config())
    assert script.get_heads() == [head()] == ["0001"]
    location = Path(_migrate.script_location())
    assert location.parent == Path(_migrate.__file__).parent
    assert {p.name for p in location.iterdir()} >= {"env.py", "script.py.mako", "versions"}
    assert (location / "versions" / "0001_initial.py").is_file()


def test_upgrade_downgrade_and_upgrade_again(database_url):
    """An empty database upgrades to head, downgrades to base (no tables left) and upgrades again."""
    assert current(database_url) is None
    upgrade(database_url)
    assert current(database_url) == head()
    assert tables(database_url) == TABLES | {VERSION_TABLE}
    downgrade(database_url, "base")
    assert current(database_url) is None
    assert tables(database_url) <= {VERSION_TABLE}
    upgrade(database_url)
    assert current(database_url) == head()
    assert tables(database_url) == TABLES | {VERSION_TABLE}


def test_upgrade_twice_is_a_no_op(database_url):
    """Upgrading a database already at head changes nothing and keeps its rows."""
    upgrade(database_url)
    with Database.from_url(database_url) as db:
        db.upsert_seller("s-1", tier="bronze")
        upgrade(database_url)
        assert db.get_seller("s-1").tier == "bronze"


def test_models_match_the_migrations(database_url):
    """Autogenerate finds no difference between the migrated schema and the models."""
    upgrade(database_url)
    assert differences(database_url, metadata) == []


def test_the_comparison_would_notice_a_drift(database_url):
    """The model comparison is not vacuous: a column the migrations lack is reported."""
    upgrade(database_url)
    drifted = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["sellers"].append_column(sa.Column("nickname", sa.String(40)))
    found = differences(database_url, drifted)
    assert [(d[0], d[3].name) for d in found if isinstance(d, tuple)] == [("add_column", "nickname")]


def test_downgrade_to_an_unknown_revision_is_a_store_error(database_url):
    """An unknown revision is refused with StoreError naming Alembic's complaint."""
    upgrade(database_url)
    with pytest.raises(StoreError, match="migration failed") as caught:
        downgrade(database_url, "9999")
    assert caught.value.__cause__ is not None
    assert current(database_url) == head()


def test_the_version_table_is_the_stores_own(database_url):
    """The store records its revision in its own table, leaving alembic_version to the application."""
    upgrade(database_url)
    assert "alembic_version" not in tables(database_url)
    engine = create(database_url)
    try:
        with engine.connect() as connection:
            query = sa.select(sa.column("version_num")).select_from(sa.table(VERSION_TABLE))
            assert connection.execute(query).scalar_one() == "0001"
    finally:
        engine.dispose()


def test_migrate_through_an_engine_leaves_it_usable(database_url):
    """Migrating through the store's own engine (Database.migrate) keeps the engine and its pool."""
    with Database.from_url(database_url) as db:
        assert db.revision() is None
        db.migrate()
        assert db.revision() == head()
        db.ping()


def test_in_memory_sqlite_migrates_through_its_single_connection():
    """``sqlite://`` keeps one shared connection, so migrating through the engine reaches the store."""
    with Database.from_url("sqlite://") as db:
        db.migrate()
        db.upsert_seller("s-1", tier="gold")
        assert db.get_seller("s-1").tier == "gold"


@pytest.mark.postgres
def test_concurrent_upgrades_take_turns(postgres_url):
    """Two replicas upgrading at the same start-up both succeed: the advisory lock serialises them."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            upgrade(postgres_url)
        except BaseException as exc:  # noqa: BLE001  collected and asserted in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert current(postgres_url) == head()


def test_env_refuses_to_run_without_a_connection():
    """The packaged env.py runs only with the connection _migrate hands it, and says so."""
    with pytest.raises(TypeError, match="migrates only through"):
        command.upgrade(_migrate.config(), "head")


def test_a_failing_upgrade_leaves_nothing_behind(database_url, monkeypatch):
    """An upgrade that fails after its DDL rolls back entirely, on SQLite as on PostgreSQL (transactional DDL)."""
    original = command.upgrade

    def upgrade_then_fail(config, revision):
        original(config, revision)
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("simulated failure after the DDL"))

    monkeypatch.setattr(command, "upgrade", upgrade_then_fail)
    with pytest.raises(StoreUnavailableError, match="simulated failure"):
        upgrade(database_url)
    monkeypatch.undo()
    assert current(database_url) is None
    assert tables(database_url) == set()
