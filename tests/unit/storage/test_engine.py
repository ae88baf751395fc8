"""How many database connections a server process keeps open (Settings.db_pool_size)."""

from __future__ import annotations

from pathlib import Path

from sharedcare.storage import database


def test_postgresql_keeps_a_connection_for_every_thread_that_can_use_one() -> None:
    # Creating the engine opens no connection, so no server is needed here.
    engine = database.make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert engine.pool.size() == 48  # type: ignore[attr-defined]


def test_sqlite_keeps_a_few_and_the_setting_overrides(tmp_path: Path) -> None:
    assert database.make_engine(f"sqlite:///{tmp_path}/a.db").pool.size() == 8  # type: ignore[attr-defined]
    engine = database.make_engine(f"sqlite:///{tmp_path}/b.db", pool_size=3)
    assert engine.pool.size() == 3  # type: ignore[attr-defined]


def test_searches_on_postgresql_read_in_autocommit_mode(tmp_path: Path) -> None:
    """READ COMMITTED gives each statement its own snapshot in a transaction too; autocommit saves the
    BEGIN and ROLLBACK round trips (token searches at 32 clients: 210-232 -> 275-287/s). SQLite keeps
    one read transaction, so a page and its count see one snapshot."""
    from sharedcare.storage import dialects

    pg = database.make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert dialects.read_options(pg) == {"isolation_level": "AUTOCOMMIT"}
    assert dialects.read_options(database.make_engine(f"sqlite:///{tmp_path}/c.db")) == {}
