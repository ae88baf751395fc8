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
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.compiler import SQLCompiler


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


def batches_writes(engine: Engine) -> bool:
    """Whether single write interactions are group-committed (see storage/committer.py).

    SQLite has one writer at a time, so concurrent writes gain nothing from separate transactions
    and each pays a full durable commit; batching them (each in its own savepoint) shares the commit.
    PostgreSQL commits concurrent transactions in parallel, and batching there could make two batches
    wait on each other's row or advisory locks, so each write keeps its own transaction.
    """
    return engine.dialect.name == "sqlite"


class RawStatement:
    """A statement compiled once for one engine and run straight on the DBAPI cursor.

    Executing a Core statement costs tens of microseconds of Python around a lookup that takes a few;
    on the hottest paths (a read by id, audit rows) the statement is compiled once and its SQL text
    run with the driver's own parameter style. Values bound inside the statement itself (for example
    by the access policy's clause) are kept and merged with the values given at run time. Only plain
    bound parameters are supported (no expanding IN lists), and no result type processing is done:
    use it for columns the driver already returns as the wanted Python types.
    """

    __slots__ = ("bound", "names", "sql")

    def __init__(self, engine: Engine, stmt: ClauseElement) -> None:
        compiled = stmt.compile(dialect=engine.dialect)
        assert isinstance(compiled, SQLCompiler)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("RawStatement cannot run statements with expanding parameters")
        self.sql = compiled.string
        self.names: tuple[str, ...] | None = tuple(compiled.positiontup) if compiled.positiontup is not None \
            else None
        self.bound = {k: v for k, v in compiled.params.items() if v is not None}

    def args(self, values: dict[str, Any]) -> Any:
        """The driver parameters for one execution."""
        merged = {**self.bound, **values} if self.bound else values
        return tuple(merged[n] for n in self.names) if self.names is not None else merged

    def fetch_one(self, engine: Engine, values: dict[str, Any]) -> Any:
        """Run on a pooled connection outside any transaction of ours; the first row or None."""
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(self.sql, self.args(values))
            row = cur.fetchone()
            cur.close()
            return row
        finally:
            raw.close()  # back to the pool, which ends the driver's implicit transaction if any

    def execute_many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """executemany inside `conn`'s current transaction."""
        if rows:
            conn.exec_driver_sql(self.sql, [self.args(r) for r in rows])


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
