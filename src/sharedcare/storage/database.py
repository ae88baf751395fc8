"""Opening the store: engine creation and schema migration (Alembic)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

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
        engine = create_engine(url, pool_size=pool_size, max_overflow=32, pool_pre_ping=True,
                               connect_args={"options": "-c max_parallel_workers_per_gather=0"})
    else:
        raise ConfigurationError(f"unsupported database backend {url.get_backend_name()!r}")
    dialects.configure(engine)
    return engine


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
