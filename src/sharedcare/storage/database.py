"""Opening the store: engine creation and schema migration (Alembic)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError

from sharedcare.errors import ConfigurationError
from sharedcare.storage import dialects

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(database_url: str, *, pool_size: int | None = None) -> Engine:
    """An engine for the store; `pool_size` connections kept open (default: see Settings.db_pool_size)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        pool_size = pool_size or 8
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_size=pool_size, max_overflow=32, pool_pre_ping=False)
    elif url.get_backend_name() == "postgresql":
        if url.get_driver_name() != "psycopg":
            raise ConfigurationError("PostgreSQL URLs must use psycopg 3: postgresql+psycopg://...")
        pool_size = pool_size or 48
        # No parallel query: the store's statements are short index lookups, for which starting
        # parallel workers costs more than it saves ($everything's count: 29 -> 9 ms at 3M resources,
        # a date window's count 58 ms, most of it waiting for workers). Population analytics run on
        # DuckDB, not here. Sent in the start-up packet, so it costs no round trip.
        engine = create_engine(url, pool_size=pool_size, max_overflow=32, pool_pre_ping=False,
                               connect_args={"options": "-c max_parallel_workers_per_gather=0"})
        ping_when_idle(engine)
    else:
        raise ConfigurationError(f"unsupported database backend {url.get_backend_name()!r}")
    dialects.configure(engine)
    return engine


PING_IDLE_S = 2.0  # a pooled connection left unused longer than this is checked before it is lent


def ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only when it has sat idle (PING_IDLE_S).

    A connection can die while it sits in the pool (a database restart or fail-over, an idle
    timeout on the way); one that does is replaced before anyone uses it, as `pool_pre_ping` would.
    Pinging a connection that was in use a moment ago costs a round trip on every request (about a
    tenth of a search's time on PostgreSQL) and finds nothing. If the database goes away between
    two requests less than PING_IDLE_S apart, the statement fails, SQLAlchemy sees the disconnect
    and drops the pool's connections, and the next request connects afresh."""
    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < PING_IDLE_S:
            return  # just connected, or just used
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError("a pooled connection died while idle") from exc
        if not alive:
            raise DisconnectionError("a pooled connection died while idle")


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Create or migrate the schema to the newest revision."""
    command.upgrade(alembic_config(engine), "head")


def is_current(engine: Engine) -> bool:
    """Is the schema at the newest revision?"""
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head


STATISTICS_AT = "sqlite_statistics_at"  # node_setting: the store's size (last created_seq) at the last ANALYZE


def refresh_statistics(engine: Engine, *, force: bool = False) -> bool:
    """Keep SQLite's query-planner statistics in step with the store; whether they were refreshed.

    SQLite keeps no statistics by itself. Without them it guesses, and for a search on two criteria
    (a family name and a birth date) it may test the second by scanning half an index instead of
    looking up each candidate's rows: 300 ms instead of 3 ms at 10,000 Patients. So ANALYZE runs
    (sampling at most 1,000 rows an index, tens of milliseconds at any size) when the store has no
    statistics yet, or has doubled or grown by 10,000 resources since they were taken. PostgreSQL's
    autovacuum keeps its own: nothing to do there."""
    if engine.dialect.name != "sqlite":
        return False
    from sqlalchemy import func, select

    from sharedcare.storage.tables import node_setting, resource

    with engine.connect() as conn:
        size = int(conn.execute(select(func.coalesce(func.max(resource.c.created_seq), 0))).scalar_one())
        taken = conn.execute(select(node_setting.c.value).where(node_setting.c.name == STATISTICS_AT)).scalar()
    last = int(taken) if taken is not None else None
    if not force and last is not None and size < 2 * last and size - last < 10_000:
        return False
    with dialects.writer(engine), engine.connect().execution_options(**dialects.write_options()) as conn, \
            conn.begin():
        conn.exec_driver_sql("PRAGMA analysis_limit=1000")
        conn.exec_driver_sql("ANALYZE")
        conn.execute(dialects.upsert(node_setting, ("name",), [{"name": STATISTICS_AT, "value": str(size)}],
                                     conn.dialect.name))
    return True
