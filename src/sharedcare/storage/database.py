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
