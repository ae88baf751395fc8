"""Group commit: single writes (on SQLite) and the audit records of reads share one commit, yet each
write succeeds or fails alone, and nobody hears "done" before the batch is durably committed.

These run the Repository directly so that many writes are in flight at once, as under real load.
"""

from __future__ import annotations

import asyncio
from typing import Any
from unittest import mock

import pytest
from sqlalchemy import func, select

from sharedcare.access.context import system_caller
from sharedcare.app import Services
from sharedcare.errors import FhirError, ServiceUnavailable
from sharedcare.fhir import interactions
from sharedcare.storage.repository import Unit
from sharedcare.storage.tables import audit, resource


def _patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}], "gender": "female"}


def _create(store: Services, body: dict[str, Any]) -> Any:
    def action(unit: Unit) -> interactions.EntryResult:
        return interactions.create(unit, "Patient", body)
    return store.repo.write_async(system_caller(), "create", "Patient", action)


def _count(store: Services, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


async def _gather(store: Services, bodies: list[dict[str, Any]]) -> list[Any]:
    return await asyncio.gather(*(_create(store, b) for b in bodies), return_exceptions=True)


def test_concurrent_writes_commit_together_but_fail_alone(store: Services) -> None:
    bodies = [_patient(f"Writer{i}") for i in range(20)]
    bodies[7] = {"resourceType": "Patient", "gender": "not-a-gender"}
    results = asyncio.run(_gather(store, bodies))

    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [7]
    assert isinstance(results[7], FhirError)
    assert results[7].status in (400, 422)
    assert _count(store, resource) == 19
    with store.engine.connect() as conn:
        statuses = sorted(conn.execute(select(audit.c.status)).scalars())
    assert statuses == [201] * 19 + [results[7].status]  # one audit record each, the failure included
    ids = {r.stored.res_id for r in results if not isinstance(r, BaseException)}
    assert len(ids) == 19
    for res_id in ids:  # every write reported as done can be read back
        assert store.repo.read(system_caller(), "Patient", res_id).data


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL commits each single write on its own
def test_sqlite_batches_single_writes(store: Services, backend: str) -> None:
    before = store.committer.batches
    results = asyncio.run(_gather(store, [_patient(f"Batch{i}") for i in range(40)]))
    assert not [r for r in results if isinstance(r, BaseException)]
    assert store.committer.batches - before < 40  # some writes shared a commit


def test_a_failed_commit_fails_every_write_and_stores_nothing(store: Services) -> None:
    with mock.patch("sharedcare.storage.audit_store.append", side_effect=RuntimeError("disk full")):
        results = asyncio.run(_gather(store, [_patient(f"Lost{i}") for i in range(10)]))
    assert all(isinstance(r, (ServiceUnavailable, RuntimeError)) for r in results)
    assert _count(store, resource) == 0
    assert _count(store, audit) == 0


def test_an_unexpected_error_in_one_write_leaves_the_others(store: Services) -> None:
    def broken(unit: Unit) -> interactions.EntryResult:
        interactions.create(unit, "Patient", _patient("HalfWritten"))
        raise RuntimeError("a bug")

    async def run() -> list[Any]:
        good = [_create(store, _patient(f"Fine{i}")) for i in range(5)]
        bad = store.repo.write_async(system_caller(), "create", "Patient", broken)
        return await asyncio.gather(bad, *good, return_exceptions=True)

    results = asyncio.run(run())
    assert isinstance(results[0], RuntimeError)
    assert not [r for r in results[1:] if isinstance(r, BaseException)]
    assert _count(store, resource) == 5  # the broken write's half was rolled back


def test_concurrent_conditional_creates_make_one_resource(store: Services) -> None:
    body = {**_patient("Once"), "identifier": [{"system": "urn:test", "value": "same"}]}

    def action(unit: Unit) -> interactions.EntryResult:
        return interactions.create(unit, "Patient", body, if_none_exist="identifier=urn:test|same")

    async def run() -> list[Any]:
        return await asyncio.gather(*(store.repo.write_async(system_caller(), "create", "Patient", action)
                                      for _ in range(8)), return_exceptions=True)

    results = asyncio.run(run())
    assert not [r for r in results if isinstance(r, BaseException)]
    assert sorted(r.status for r in results) == [200] * 7 + [201]
    assert _count(store, resource) == 1


def test_records_queued_in_one_turn_of_the_event_loop_share_one_commit(store: Services) -> None:
    """The audit records of requests running in the same turn of the event loop are released to the
    commit thread together, after the turn: one commit for all of them, not one per request, even
    though each request lets go of the interpreter lock before it queues its record (as a read does
    while SQLite looks the resource up), which lets the commit thread run."""
    import time

    from sharedcare.access.audit import AuditRecord

    records = [AuditRecord("read", 200, system_caller(), store.repo.now(), "Patient", f"p{i}") for i in range(25)]

    async def read(rec: AuditRecord) -> None:
        time.sleep(0.002)  # the lookup, outside the interpreter lock
        await store.committer.record_async(rec)

    async def reads() -> None:
        await asyncio.gather(*(read(rec) for rec in records))

    before = store.committer.batches
    asyncio.run(reads())
    assert store.committer.batches - before == 1
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit).where(
            audit.c.res_id.like("p%"))).scalar_one() == 25


def test_a_waiting_thread_is_not_held_back_by_a_loop_that_stopped(store: Services) -> None:
    """A loop that closed before its release ran (its requests are gone) must not hold back anyone
    else's records: a blocking submission, and a later loop's, are committed at once."""
    from sharedcare.access.audit import AuditRecord

    loop = asyncio.new_event_loop()
    rec = AuditRecord("read", 200, system_caller(), store.repo.now(), "Patient", "orphan")
    task = loop.create_task(store.committer.record_async(rec))
    loop.call_soon(loop.stop)
    loop.run_forever()  # the task queued its record; the release is still pending
    task.cancel()
    loop.close()
    store.committer.record(AuditRecord("read", 200, system_caller(), store.repo.now(), "Patient", "blocking"))
    asyncio.run(store.committer.record_async(
        AuditRecord("read", 200, system_caller(), store.repo.now(), "Patient", "later")))
    with store.engine.connect() as conn:
        ids = set(conn.execute(select(audit.c.res_id).where(audit.c.res_id.in_(
            ["orphan", "blocking", "later"]))).scalars())
    assert ids == {"orphan", "blocking", "later"}
