"""Every difference between SQLite and PostgreSQL lives here.

- SQLite (embedded default): one file in WAL mode; the driver's own transaction handling is turned
  off so we emit `BEGIN IMMEDIATE` for writes, which serialises writers up front (no lock upgrades
  that fail half way) and makes check-then-insert sequences (conditional create) atomic.
- PostgreSQL (production): READ COMMITTED; check-then-insert sequences take a transaction-scoped
  advisory lock on a hash of what they check, and version checks lock the row (`FOR UPDATE`).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql import Select


def is_sqlite(conn_or_engine: Connection | Engine) -> bool:
    return conn_or_engine.dialect.name == "sqlite"


def configure(engine: Engine, *, sqlite_synchronous: str = "FULL") -> None:
    """Install the per-dialect connection behaviour on a new engine."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives power loss, not only a process crash. Durability is not traded.
        cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.execute("PRAGMA cache_size=-65536")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("single_read"):
            return  # one SELECT is atomic by itself; skipping BEGIN/ROLLBACK halves a read's cost
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("write") else "BEGIN")


_WRITE_LOCKS: dict[int, threading.Lock] = {}


@contextlib.contextmanager
def writer(engine: Engine) -> Iterator[None]:
    """Serialise this process's SQLite writers before they ask SQLite for its lock.

    SQLite lets one writer in at a time; others wait in its busy handler, which sleeps in growing
    steps (up to 100 ms), so under concurrency the lock sits idle while writers sleep. Queueing on a
    Python lock first hands the database straight to the next writer. Other processes still
    coordinate through SQLite's own lock. PostgreSQL needs no such thing.
    """
    if engine.dialect.name != "sqlite":
        yield
        return
    lock = _WRITE_LOCKS.setdefault(id(engine), threading.Lock())
    with lock:
        yield


def write_options() -> dict[str, Any]:
    """Execution options for a connection that will write."""
    return {"write": True}


def single_read_options() -> dict[str, Any]:
    """Execution options for a connection that runs exactly one SELECT."""
    return {"single_read": True}


def lock_key(conn: Connection, *parts: str) -> None:
    """Serialise transactions that check-then-write the same thing (conditional create/update).

    SQLite already serialises all writers (BEGIN IMMEDIATE), so only PostgreSQL needs a lock.
    """
    if is_sqlite(conn):
        return
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def for_update(stmt: Select[Any], conn: Connection) -> Select[Any]:
    """Lock the selected rows until commit where the database supports it."""
    return stmt if is_sqlite(conn) else stmt.with_for_update()


def insert_ignore(conn: Connection, table: Any, values: dict[str, Any] | list[dict[str, Any]]) -> None:
    """INSERT (one row or many) that does nothing where the primary key already exists."""
    if is_sqlite(conn):
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(table).on_conflict_do_nothing(), values)
    else:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(table).on_conflict_do_nothing(), values)
