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
import weakref
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import Any

from sqlalchemy import Engine, String, bindparam, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


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
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


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


def read_options(engine: Engine) -> dict[str, Any]:
    """Execution options for a connection that only reads (a search, a page of $everything).

    On PostgreSQL it runs in autocommit mode: at READ COMMITTED every statement takes its own
    snapshot in a transaction too, so nothing changes but the BEGIN and ROLLBACK round trips saved.
    On SQLite the reads stay in one transaction (one snapshot for the page and its count)."""
    return {"isolation_level": "AUTOCOMMIT"} if engine.dialect.name == "postgresql" else {}


def batches_writes(engine: Engine) -> bool:
    """Whether single write interactions are group-committed (see storage/committer.py).

    SQLite has one writer at a time, so concurrent writes gain nothing from separate transactions
    and each pays a full durable commit; batching them (each in its own savepoint) shares the commit.
    PostgreSQL commits concurrent transactions in parallel, and batching there could make two batches
    wait on each other's row or advisory locks, so each write keeps its own transaction.
    """
    return engine.dialect.name == "sqlite"


def driver_error(dialect: Any, statement: str, exc: Exception, dbapi_conn: Any) -> DBAPIError:
    """A driver error from a statement run on the driver's cursor, as SQLAlchemy raises it from its own
    (IntegrityError for a constraint, `connection_invalidated` when the database went away), so that
    callers handle one kind of error. Parameters are left out: they can hold record content."""
    return DBAPIError.instance(statement, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                               connection_invalidated=bool(dialect.is_disconnect(exc, dbapi_conn, None)),
                               dialect=dialect)  # type: ignore[return-value]


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
        """Run outside any transaction of ours; the first row or None."""
        if engine.dialect.name == "sqlite":
            # The driver runs in autocommit mode (see `configure`), so a lone SELECT sees the latest
            # commit; each thread keeps one connection for these reads instead of a pool round trip.
            return self._first_row(_sqlite_reader(engine), values)
        for attempt in (1, 2):
            raw = engine.raw_connection()
            driver = raw.driver_connection
            try:
                # Autocommit: no BEGIN before the SELECT and no ROLLBACK when the connection goes back
                # (one round trip instead of three; a lone statement has its own snapshot either way).
                driver.autocommit = True  # type: ignore[union-attr]
                try:
                    return self._first_row(raw, values)
                finally:
                    if not driver.closed:  # type: ignore[union-attr]
                        driver.autocommit = False  # type: ignore[union-attr]
            except engine.dialect.loaded_dbapi.Error as exc:
                error = driver_error(engine.dialect, self.sql, exc, driver)
                if attempt == 2 or not error.connection_invalidated:
                    raise error from exc
                # The database went away under this connection (a restart, a fail-over), so it did
                # under the pool's others too: drop them all, and read again on a new connection.
                raw.invalidate(exc)
                engine.dispose()
            finally:
                raw.close()  # back to the pool
        raise AssertionError("unreachable")

    def _first_row(self, dbapi_conn: Any, values: dict[str, Any]) -> Any:
        cur = dbapi_conn.cursor()
        try:
            cur.execute(self.sql, self.args(values))
            return cur.fetchone()
        finally:
            cur.close()  # ends the statement, so no read snapshot is held between reads


class Compiled:
    """A statement built per dialect by `build(dialect_name)`, compiled once and run on the driver."""

    def __init__(self, build: Callable[[str], ClauseElement]) -> None:
        self._build = build
        self._compiled: dict[str, RawStatement] = {}

    def get(self, engine: Engine) -> RawStatement:
        found = self._compiled.get(engine.dialect.name)
        if found is None:
            found = self._compiled[engine.dialect.name] = RawStatement(engine, self._build(engine.dialect.name))
        return found

    def execute(self, conn: Connection, values: dict[str, Any]) -> Any:
        """Run inside `conn`'s current transaction (the SQLAlchemy result)."""
        raw = self.get(conn.engine)
        return conn.exec_driver_sql(raw.sql, raw.args(values))

    def rows(self, conn: Connection, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run a SELECT inside `conn`'s current transaction on the driver's cursor: its rows as the
        driver's tuples, in the statement's column order (no result object per execution, for
        statements run thousands of times in a loop)."""
        raw = self.get(conn.engine)
        dbapi_conn = conn.connection.dbapi_connection
        cur = dbapi_conn.cursor()  # type: ignore[union-attr]
        try:
            try:
                cur.execute(raw.sql, raw.args(values))
            except conn.dialect.loaded_dbapi.Error as exc:
                raise driver_error(conn.dialect, raw.sql, exc, dbapi_conn) from exc
            return list(cur.fetchall())
        finally:
            cur.close()


_READERS = threading.local()


def _sqlite_reader(engine: Engine) -> Any:
    """This thread's SQLite connection for lone SELECTs (held until the engine is dropped)."""
    held: weakref.WeakKeyDictionary[Engine, Any] | None = getattr(_READERS, "held", None)
    if held is None:
        held = _READERS.held = weakref.WeakKeyDictionary()
    conn = held.get(engine)
    if conn is None:
        conn = held[engine] = engine.raw_connection()
    return conn


class RowsStatement:
    """A statement over many rows of parameters in few round trips: a multi-row VALUES list or an
    IN list, built by `build(n, dialect_name)` for n rows whose parameters are named `{column}_{i}`.

    Statements are compiled once per chunk size (a few fixed sizes, so the cache stays small) and run
    on the driver. One statement for many rows also means one trip into the database engine, where
    executemany makes one per row (and on SQLite gives up the GIL once per row)."""

    SIZES = (64, 32, 16, 8, 4, 2, 1)  # few shapes to compile (a 256-row INSERT takes ~75 ms to compile)

    def __init__(self, build: Callable[[int, str], ClauseElement], columns: Sequence[str], *,
                 lookup: bool = False) -> None:
        """`lookup`: the statement matches rows against a list (an IN list), where repeating a value
        changes nothing, so a short last chunk is padded up to a compiled size (one statement)."""
        self._build = build
        self._columns = tuple(columns)
        self._lookup = lookup
        self._compiled: dict[tuple[str, int], tuple[RawStatement, bool]] = {}

    def _get(self, engine: Engine, n: int) -> tuple[RawStatement, bool]:
        key = (engine.dialect.name, n)
        found = self._compiled.get(key)
        if found is None:
            raw = RawStatement(engine, self._build(n, engine.dialect.name))
            # Positional drivers whose parameters come row by row, column by column, take a flat tuple.
            flat = raw.names == tuple(f"{c}_{i}" for i in range(n) for c in self._columns) and not raw.bound
            found = self._compiled[key] = (raw, flat)
        return found

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """Run over every row inside `conn`'s current transaction; the rows it returns, if any (as
        the driver's tuples). Runs on the driver's cursor: wrapping each result costs more than the
        statement. Driver errors are raised as SQLAlchemy's, as Core would (`driver_error`)."""
        cols = self._columns
        return self._run(conn, rows, lambda chunk: tuple([row[c] for row in chunk for c in cols]),
                         lambda chunk: {f"{c}_{i}": row[c] for i, row in enumerate(chunk) for c in cols})

    def execute_tuples(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        """`execute` for rows given as tuples in column order (no dict per row)."""
        cols = self._columns
        return self._run(conn, rows, lambda chunk: tuple(chain.from_iterable(chunk)),
                         lambda chunk: {f"{c}_{i}": v for i, row in enumerate(chunk)
                                        for c, v in zip(cols, row, strict=True)})

    def _run(self, conn: Connection, rows: Sequence[Any], flat: Callable[[Sequence[Any]], tuple[Any, ...]],
             named: Callable[[Sequence[Any]], dict[str, Any]]) -> list[Any]:
        """Each chunk's parameters come from `flat` (positional drivers: row by row, column by column)
        or `named` (`{column}_{i}`, for drivers with named parameters or statements with bound values)."""
        out: list[Any] = []
        if not rows:
            return out
        dbapi_conn = conn.connection.dbapi_connection
        cur = dbapi_conn.cursor()  # type: ignore[union-attr]
        try:
            start = 0
            while start < len(rows):
                left = len(rows) - start
                n = next(size for size in self.SIZES if size <= left)
                chunk = rows[start:start + n]
                if self._lookup and n < left <= self.SIZES[0]:
                    n = next(size for size in reversed(self.SIZES) if size >= left)
                    chunk = [*rows[start:], *[rows[-1]] * (n - left)]
                raw, is_flat = self._get(conn.engine, n)
                args = flat(chunk) if is_flat else raw.args(named(chunk))
                try:
                    cur.execute(raw.sql, args)
                except conn.dialect.loaded_dbapi.Error as exc:
                    raise driver_error(conn.dialect, raw.sql, exc, dbapi_conn) from exc
                if cur.description is not None:
                    out.extend(cur.fetchall())
                start += n
        finally:
            cur.close()
        return out


def insert_rows(table: Any, columns: Sequence[str] | None = None, *, returning: Sequence[str] = ()) -> RowsStatement:
    """A multi-row INSERT into `table` of `columns` (default: all), optionally RETURNING some columns.
    The values are bound as given: convert values of types Core would convert (Numeric) first."""
    cols = tuple(columns) if columns is not None else tuple(c.name for c in table.columns)

    def build(n: int, _dialect: str) -> ClauseElement:
        stmt = table.insert().values([{c: bindparam(f"{c}_{i}") for c in cols} for i in range(n)])
        out: ClauseElement = stmt.returning(*(table.c[c] for c in returning)) if returning else stmt
        return out
    return RowsStatement(build, cols)


def upsert(table: Any, key: Sequence[str], values: list[dict[str, Any]], dialect_name: str) -> Any:
    """INSERT rows, updating every non-key column where the key already exists."""
    if dialect_name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]
    stmt = dialect_insert(table).values(values)
    return stmt.on_conflict_do_update(
        index_elements=list(key), set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key})


def lock_key(conn: Connection, *parts: str) -> None:
    """Serialise transactions that check-then-write the same thing (conditional create/update).

    SQLite already serialises all writers (BEGIN IMMEDIATE), so only PostgreSQL needs a lock.
    """
    if is_sqlite(conn):
        return
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def for_update(stmt: Select[Any], conn: Connection | str) -> Select[Any]:
    """Lock the selected rows until commit where the database supports it (`conn` or a dialect name)."""
    name = conn if isinstance(conn, str) else conn.dialect.name
    return stmt if name == "sqlite" else stmt.with_for_update()


def insert_ignore(conn: Connection, table: Any, values: dict[str, Any] | list[dict[str, Any]]) -> None:
    """INSERT (one row or many) that does nothing where the primary key already exists."""
    if is_sqlite(conn):
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(table).on_conflict_do_nothing(), values)
    else:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(table).on_conflict_do_nothing(), values)


def insert_new(conn: Connection, table: Any, values: dict[str, Any], returning: Any) -> Any | None:
    """INSERT one row unless a primary or unique key already holds it: the `returning` column of the
    row inserted, or None when nothing was (a duplicate). Tells the two apart reliably on both
    backends, where a driver's rowcount for a skipped row may not."""
    if is_sqlite(conn):
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt: Any = sqlite_insert(table).on_conflict_do_nothing()
    else:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table).on_conflict_do_nothing()
    return conn.execute(stmt.returning(returning), values).scalar_one_or_none()


def prefix_bounds(column: Any, prefix: str, conn: Connection) -> list[Any]:
    """Extra conditions that let an index range find values starting with `prefix` (already matched
    exactly by LIKE). SQLite's LIKE ignores ASCII case, so it never uses an index for it, while its
    binary collation orders strings by code point: `prefix <= value < prefix-with-last-char-bumped`
    is exactly the values with that prefix. PostgreSQL's text order follows the database collation,
    where that range is not exact, so nothing is added there. The bump skips the surrogate block
    (U+D800–U+DFFF), which is never in text and cannot be encoded: after U+D7FF comes U+E000."""
    if not prefix or not is_sqlite(conn) or ord(prefix[-1]) >= 0x10FFFF:
        return []
    bumped = ord(prefix[-1]) + 1
    if 0xD800 <= bumped <= 0xDFFF:
        bumped = 0xE000
    return [column >= prefix, column < prefix[:-1] + chr(bumped)]


class utc_now_text(FunctionElement[str]):
    """The database's current time as stored timestamps are written (UTC, `YYYY-MM-DDTHH:MM:SS.ffffff`;
    SQLite gives milliseconds, which still compare correctly as text). Used by the access policy so a
    compiled statement stays valid as time passes (relationships and break-glass grants expire). A
    FunctionElement, so statements holding it keep SQLAlchemy's compiled-statement cache."""

    type = String()
    inherit_cache = True


@compiles(utc_now_text, "sqlite")
def _now_sqlite(_element: utc_now_text, _compiler: Any, **_kw: Any) -> str:
    return "strftime('%Y-%m-%dT%H:%M:%f', 'now')"


@compiles(utc_now_text, "postgresql")
def _now_postgresql(_element: utc_now_text, _compiler: Any, **_kw: Any) -> str:
    return "to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
