"""Group commit: one thread commits the audit records of reads and, on SQLite, single writes, in batches.

A durable commit costs a disk flush. Paying one per read's audit record, or per single create on a
database that takes one writer at a time, caps the whole server at the disk's flush rate. So requests
hand their work to this committer and wait; its thread takes everything that has queued up, runs it in
one transaction and commits once. Under light load a batch holds one job and nothing waits longer
than its own commit; under heavy load batches grow while the previous one is being flushed.

Jobs submitted from an event loop (the API's reads and searches) are released to the thread once per
turn of that loop, after the requests running in the turn have queued theirs; blocking submissions
are released at once. Otherwise the thread, woken by the first record, would take the interpreter
lock from the loop each time a request let go of it (during any database call) and commit batches of
one or two: a commit's fixed cost, and a hand-off, per request.

A job is either audit records only (a read: the data is released once its record is committed, and
if the commit fails the read fails closed with 503, AU2) or a write: a function run on the batch's
connection inside its own SAVEPOINT, so a failing write is rolled back alone and reported alone,
while the others in the batch commit. Nobody is told their write succeeded before the batch commits;
if the commit fails every job in the batch fails and nothing of it is stored.

Writes through the committer are used where `dialects.batches_writes` says so (SQLite); on
PostgreSQL each write keeps its own transaction and only audit records of reads are batched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from sharedcare.access.audit import AuditRecord
from sharedcare.errors import FhirError, ServiceUnavailable
from sharedcare.storage import audit_store, dialects

log = logging.getLogger("sharedcare.storage")

# run(conn) -> (result, audit records of what it did); on_error(exc) -> audit records of the failure.
WriteFn = Callable[[Connection], tuple[Any, list[AuditRecord]]]
ErrorFn = Callable[[FhirError], list[AuditRecord]]


class Job:
    __slots__ = ("error", "on_error", "records", "result", "run")

    def __init__(self, records: list[AuditRecord] | None = None, run: WriteFn | None = None,
                 on_error: ErrorFn | None = None) -> None:
        self.records = records or []
        self.run = run
        self.on_error = on_error
        self.result: Any = None
        self.error: BaseException | None = None


class _Batch:
    __slots__ = ("done", "error", "jobs", "waiters")

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.done = threading.Event()
        self.error: BaseException | None = None
        # One future per event loop and kind (read or write) of job in this batch, resolved from the
        # commit thread. Only reads' futures can expire: a write always waits for its real outcome.
        self.waiters: dict[tuple[asyncio.AbstractEventLoop, bool], asyncio.Future[None]] = {}


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class Committer:
    """See the module docstring. `flush_ms` is how long the thread lingers for more jobs once one has
    arrived, and only while under load (the previous batch held more than one job): a lone request
    is committed at once, while under load each batch's fixed cost (about half a millisecond of CPU
    for the transaction, the statements and the flush) is shared by more jobs. 0 never lingers."""

    def __init__(self, engine: Engine, *, flush_ms: float = 0.0, max_batch: int = 512,
                 read_timeout_s: float = 30.0) -> None:
        self._engine = engine
        self._flush_s = flush_ms / 1000
        self._max_batch = max_batch
        self._read_timeout_s = read_timeout_s
        self._cv = threading.Condition()
        self._batch = _Batch()
        self._closed = False
        self.batches = 0  # batches committed or failed so far (for figures and tests)
        self.jobs = 0
        self._conn: Connection | None = None  # used by the commit thread only
        self._last_size = 0
        self._idle = False  # the thread is waiting for a first job (guarded by _cv)
        self._released = False  # queued jobs may be taken (guarded by _cv)
        # Loops with a release scheduled (weak: a loop closed before its release ran is forgotten).
        self._kicks: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._thread = threading.Thread(target=self._loop, name="group-commit", daemon=True)
        self._thread.start()

    # -- submitting ----------------------------------------------------------------------------------
    def _enqueue(self, job: Job, loop: asyncio.AbstractEventLoop | None) -> tuple[_Batch, asyncio.Future[None] | None]:
        with self._cv:
            if self._closed:
                raise ServiceUnavailable("the store is shutting down")
            batch = self._batch
            batch.jobs.append(job)
            fut = None
            if loop is not None:
                key = (loop, job.run is not None)
                fut = batch.waiters.get(key)
                if fut is None:
                    fut = batch.waiters[key] = loop.create_future()
                    if job.run is None:  # reads give up (503, no data) if the audit cannot be confirmed
                        loop.call_later(self._read_timeout_s, _expire, fut)
            if loop is None or len(batch.jobs) >= self._max_batch:
                self._release()  # a blocked thread waits, or the batch is full: commit now
            elif loop not in self._kicks:
                # Jobs from an event loop are released once per turn of the loop: what the requests
                # running in this turn queue goes into one batch, instead of the thread waking, and
                # taking the GIL from the loop, for each request's record.
                self._kicks.add(loop)
                loop.call_soon(self._kick, loop)
        return batch, fut

    def _release(self) -> None:
        """Let the thread take the queued jobs (called holding `_cv`)."""
        self._released = True
        if self._idle or len(self._batch.jobs) >= self._max_batch:
            self._cv.notify()

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._cv:
            self._kicks.discard(loop)
            self._release()

    @staticmethod
    def _outcome(batch: _Batch, job: Job) -> Any:
        if batch.error is not None:
            raise ServiceUnavailable("the store could not commit; nothing was recorded") from None
        if job.error is not None:
            raise job.error
        return job.result

    def submit(self, job: Job) -> Any:
        """Queue a job and block until its batch is committed: its result, or its error."""
        batch, _ = self._enqueue(job, None)
        timeout = None if job.run is not None else self._read_timeout_s  # a write's outcome must be known
        if not batch.done.wait(timeout):
            raise ServiceUnavailable("the audit record could not be confirmed in time")
        return self._outcome(batch, job)

    async def submit_async(self, job: Job) -> Any:
        """`submit` for code on an event loop: awaits the commit without holding a thread."""
        batch, fut = self._enqueue(job, asyncio.get_running_loop())
        assert fut is not None
        try:
            await asyncio.shield(fut)  # shared by other requests: a cancelled request must not cancel it
        except TimeoutError:
            raise ServiceUnavailable("the audit record could not be confirmed in time") from None
        return self._outcome(batch, job)

    def record(self, rec: AuditRecord) -> None:
        """Block until an audit record is durably committed (ServiceUnavailable if it cannot be)."""
        self.submit(Job([rec]))

    async def record_async(self, rec: AuditRecord) -> None:
        await self.submit_async(Job([rec]))

    # -- the commit thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                self._idle = True
                while not (self._batch.jobs and self._released) and not self._closed:
                    self._cv.wait()
                self._idle = False
                if self._closed and not self._batch.jobs:
                    self._drop_connection()
                    return
                if self._flush_s > 0 and self._last_size > 1:
                    deadline = time.monotonic() + self._flush_s
                    while len(self._batch.jobs) < self._max_batch and not self._closed:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cv.wait(left)
                batch, self._batch = self._batch, _Batch()
                self._released = False
                self._last_size = len(batch.jobs)
            self._commit(batch)

    def _commit(self, batch: _Batch) -> None:
        self.batches += 1
        self.jobs += len(batch.jobs)
        try:
            try:
                self._commit_once(batch)
            except Exception as exc:
                # The database dropped this thread's connection (a restart, a fail-over) while it sat
                # between batches: a batch of audit records only is sent again on a new connection.
                # (Had the connection died during the COMMIT itself, a record could be stored twice;
                # a read recorded twice is better than reads refused after every database restart.)
                lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
                if not lost or any(job.run is not None for job in batch.jobs):
                    raise
                self._drop_connection()
                self._commit_once(batch)
        except Exception as exc:  # a failed commit fails every job in the batch, closed
            log.error("group commit failed: %s", type(exc).__name__)
            batch.error = exc
            self._drop_connection()  # start the next batch on a fresh connection
        finally:
            batch.done.set()
            for (loop, _), fut in batch.waiters.items():
                with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
                    loop.call_soon_threadsafe(_resolve, fut)

    def _commit_once(self, batch: _Batch) -> None:
        conn = self._connection()
        with dialects.writer(self._engine), conn.begin():
            records: list[AuditRecord] = []
            for job in batch.jobs:
                if job.run is not None:
                    self._run_write(conn, job, records)
                records.extend(job.records)
            audit_store.append(conn, records)

    def _connection(self) -> Connection:
        """The commit thread's own connection, kept between batches (no pool round trip per batch)."""
        if self._conn is None:
            self._conn = self._engine.connect().execution_options(**dialects.write_options())
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    @staticmethod
    def _run_write(conn: Connection, job: Job, records: list[AuditRecord]) -> None:
        assert job.run is not None
        savepoint = conn.begin_nested()
        try:
            job.result, audits = job.run(conn)
        except FhirError as exc:
            savepoint.rollback()
            job.error = exc
            if job.on_error is not None:
                records.extend(job.on_error(exc))
            return
        except Exception as exc:  # a bug in one write must not take the batch down with it
            savepoint.rollback()
            log.error("write failed: %s", type(exc).__name__)
            job.error = exc
            return
        savepoint.commit()
        records.extend(audits)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        with contextlib.suppress(RuntimeError):
            self._thread.join(timeout=30)
