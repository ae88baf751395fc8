"""Writing audit records: in the caller's transaction (writes) or group-committed (reads).

Group commit: a reading request hands its record to `AuditStore.record`, which blocks until the batch
holding it is committed (one transaction for every record that arrived within `flush_ms`). If the
commit fails the request gets 503 and no data (AU2: fail closed, never serve unaudited).

Each partition's records form a hash chain: the chain head row is locked while a batch is appended,
so concurrent writers (several processes on PostgreSQL) cannot fork a chain. `verify` re-walks chains.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable

from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.engine import Connection

from sharedcare.access.audit import GENESIS, AuditRecord, chain_hash
from sharedcare.errors import ServiceUnavailable
from sharedcare.storage import dialects
from sharedcare.storage.tables import audit, audit_chain

# Statements built once: their construction costs more than running them.
_MOVE_HEAD = update(audit_chain).where(audit_chain.c.partition_key == bindparam("p")).values(
    last_seq=bindparam("n"), last_hash=bindparam("h"))
_INSERT = audit.insert()


def append(conn: Connection, records: Iterable[AuditRecord]) -> None:
    """Append records to their partitions' chains inside the caller's (write) transaction.

    A batch touches many partitions (reads of many patients), so the chain heads are locked with one
    SELECT ... FOR UPDATE (in partition order: no deadlocks between batches), the rows inserted with
    one executemany and the heads moved with another."""
    by_partition: dict[str, list[dict[str, object]]] = {}
    for rec in records:
        by_partition.setdefault(rec.partition_key, []).append(rec.row())
    if not by_partition:
        return
    partitions = sorted(by_partition)
    heads = _lock_heads(conn, partitions)
    missing = [p for p in partitions if p not in heads]
    if missing:
        dialects.insert_ignore(conn, audit_chain, [{"partition_key": p, "last_seq": 0, "last_hash": GENESIS}
                                                   for p in missing])
        heads.update(_lock_heads(conn, missing))
    all_rows: list[dict[str, object]] = []
    moves: list[dict[str, object]] = []
    for partition in partitions:
        count, prev = heads[partition]
        rows = by_partition[partition]
        for row in rows:
            row["prev_hash"] = prev
            row["hash"] = prev = chain_hash(prev, row)
        all_rows.extend(rows)
        moves.append({"p": partition, "n": count + len(rows), "h": prev})
    conn.execute(_INSERT, all_rows)
    conn.execute(_MOVE_HEAD, moves)


def _lock_heads(conn: Connection, partitions: list[str]) -> dict[str, tuple[int, str]]:
    heads: dict[str, tuple[int, str]] = {}
    for start in range(0, len(partitions), 500):
        stmt = select(audit_chain.c.partition_key, audit_chain.c.last_seq, audit_chain.c.last_hash).where(
            audit_chain.c.partition_key.in_(partitions[start:start + 500])).order_by(audit_chain.c.partition_key)
        for r in conn.execute(dialects.for_update(stmt, conn)):
            heads[r.partition_key] = (r.last_seq, r.last_hash)
    return heads


class _Batch:
    __slots__ = ("done", "error", "futures", "records")

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.done = threading.Event()
        self.error: BaseException | None = None
        # Waiters on event loops: resolved from the commit thread with call_soon_threadsafe.
        self.futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(ServiceUnavailable("audit store unavailable"))


class AuditStore:
    """Group-commits audit records of reads; see the module docstring."""

    def __init__(self, engine: Engine, *, flush_ms: float = 2.0, max_batch: int = 512,
                 timeout_s: float = 30.0) -> None:
        self._engine = engine
        self._flush_s = flush_ms / 1000
        self._max_batch = max_batch
        self._timeout_s = timeout_s
        self._cv = threading.Condition()
        self._batch = _Batch()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="audit-group-commit", daemon=True)
        self._thread.start()

    def record(self, rec: AuditRecord) -> None:
        """Block until `rec` is durably committed; raise ServiceUnavailable if it cannot be."""
        with self._cv:
            if self._closed:
                raise ServiceUnavailable("audit store is closed")
            batch = self._batch
            batch.records.append(rec)
            self._cv.notify()
        if not batch.done.wait(self._timeout_s):
            raise ServiceUnavailable("audit store did not confirm the audit record in time")
        if batch.error is not None:
            raise ServiceUnavailable("audit store unavailable") from None

    async def record_async(self, rec: AuditRecord) -> None:
        """`record` for code on an event loop: awaits the group commit without holding a thread."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cv:
            if self._closed:
                raise ServiceUnavailable("audit store is closed")
            self._batch.records.append(rec)
            self._batch.futures.append((loop, fut))
            self._cv.notify()
        try:
            await asyncio.wait_for(fut, self._timeout_s)
        except TimeoutError:
            raise ServiceUnavailable("audit store did not confirm the audit record in time") from None

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._batch.records and not self._closed:
                    self._cv.wait()
                if self._closed and not self._batch.records:
                    return
            # Gather what arrives within the flush window (or until the batch is full).
            deadline = time.monotonic() + self._flush_s
            with self._cv:
                while len(self._batch.records) < self._max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                batch, self._batch = self._batch, _Batch()
            self._commit(batch)

    def _commit(self, batch: _Batch) -> None:
        try:
            with dialects.writer(self._engine), \
                    self._engine.connect().execution_options(**dialects.write_options()) as conn, conn.begin():
                append(conn, batch.records)
        except Exception as exc:  # any failure must fail the waiting requests closed
            batch.error = exc
        finally:
            batch.done.set()
            for loop, fut in batch.futures:
                with contextlib.suppress(RuntimeError):  # a loop that has closed has no one waiting
                    loop.call_soon_threadsafe(_settle, fut, batch.error)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        with contextlib.suppress(RuntimeError):
            self._thread.join(timeout=10)


def verify(engine: Engine) -> list[str]:
    """Re-walk every partition's chain; return the partitions whose chain does not verify."""
    broken: list[str] = []
    with engine.connect() as conn:
        heads = {r.partition_key: r.last_hash for r in conn.execute(select(audit_chain))}
        for partition, last_hash in heads.items():
            prev = GENESIS
            rows = conn.execute(select(audit).where(audit.c.partition_key == partition).order_by(audit.c.seq))
            ok = True
            for r in rows:
                row = dict(r._mapping)
                if row["prev_hash"] != prev or chain_hash(prev, row) != row["hash"]:
                    ok = False
                    break
                prev = row["hash"]
            if not ok or prev != last_hash:
                broken.append(partition)
    return broken
