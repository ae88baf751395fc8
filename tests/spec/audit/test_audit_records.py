"""Every interaction, allowed or denied, leaves exactly one audit record; chains verify; the database
refuses changes to the trail (AU3); reads fail closed when the audit store cannot commit (AU2)."""

from __future__ import annotations

from unittest import mock

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from sharedcare.access.audit import GENESIS, AuditRecord, chain_hash
from sharedcare.access.context import system_caller
from sharedcare.app import Services
from sharedcare.storage.audit_store import WATERMARK, AuditFilter, append, index_patients, search, verify
from sharedcare.storage.tables import audit, audit_chain, audit_patient, node_setting
from tests.spec.rest.helpers import FHIR_JSON, create, patient


def audit_rows(store: Services) -> list[dict]:  # type: ignore[type-arg]
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit).order_by(audit.c.seq))]


def test_one_record_per_interaction_allowed_or_denied(client: TestClient, store: Services) -> None:
    p = create(client, patient())
    client.get(f"/fhir/Patient/{p['id']}")
    client.get("/fhir/Patient/missing")
    client.get("/fhir/Patient?_count=5")
    client.put(f"/fhir/Patient/{p['id']}", json=p, headers={"Content-Type": FHIR_JSON, "If-Match": 'W/"9"'})
    rows = audit_rows(store)
    assert [(r["interaction"], r["status"]) for r in rows] == [
        ("create", 201), ("read", 200), ("read", 404), ("search-type", 200), ("update", 412)]
    assert rows[0]["action"] == "C"
    assert rows[1]["patients"] == p["id"]
    assert rows[1]["partition_key"] == p["id"]
    assert rows[2]["outcome"] == "4"
    assert all(r["agent_id"] == "client:tests" for r in rows)  # the client fixture's caller


def test_audit_records_hold_no_record_content(client: TestClient, store: Services) -> None:
    create(client, patient("Zebedee-Unique-Surname"))
    assert "Zebedee" not in repr(audit_rows(store))


def test_the_database_refuses_to_change_or_delete_audit_records(client: TestClient, store: Services) -> None:
    """AU3: not only does no application path write them; the database itself refuses (migration 0017)."""
    p = create(client, patient())
    client.get(f"/fhir/Patient/{p['id']}")
    for statement in (update(audit).where(audit.c.seq == 2).values(status=404), delete(audit)):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(statement)
    assert len(audit_rows(store)) == 2
    assert verify(store.engine) == []


def test_hash_chains_verify_and_detect_tampering(client: TestClient, store: Services) -> None:
    """Someone who can drop the database's guard (an administrator) still cannot hide a change."""
    p = create(client, patient())
    for _ in range(3):
        client.get(f"/fhir/Patient/{p['id']}")
    assert verify(store.engine) == []
    sqlite = store.engine.dialect.name == "sqlite"
    with store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_no_update" if sqlite else "DROP TRIGGER audit_append_only ON audit"))
        conn.execute(update(audit).where(audit.c.seq == 2).values(status=404))
        lane = conn.execute(select(audit.c.chain).where(audit.c.seq == 2)).scalar_one()
    try:
        assert lane.startswith("~lane:")
        assert verify(store.engine) == [lane]  # the chain the changed record is in
    finally:  # the PostgreSQL test database is shared by the session's tests: put the guard back
        with store.engine.begin() as conn:
            conn.execute(text(
                "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, "
                "'the audit trail is append-only'); END" if sqlite else
                "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
                "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"))


def test_a_transaction_appends_all_its_records_to_one_lane(client: TestClient, store: Services) -> None:
    """However many patients a transaction's records name, it extends one chain and moves one head."""
    people = [create(client, patient()) for _ in range(3)]
    rec = [AuditRecord("read", 200, system_caller(), "2026-11-28T23:00:00.000000", "Patient", p["id"], 1,
                       (p["id"],)) for p in people]
    with store.engine.begin() as conn:
        before = {r.partition_key: r.last_seq for r in conn.execute(select(audit_chain))}
        append(conn, rec)
    with store.engine.connect() as conn:
        after = {r.partition_key: r.last_seq for r in conn.execute(select(audit_chain))}
        appended = conn.execute(select(audit).order_by(audit.c.seq.desc()).limit(3)).mappings().all()
    moved = {k for k in after if after[k] != before.get(k, 0)}
    assert len(moved) == 1
    assert {r["chain"] for r in appended} == moved
    assert after[moved.pop()] - before.get(appended[0]["chain"], 0) == 3
    assert [r["prev_hash"] for r in appended[:2]] == [r["hash"] for r in appended[1:]]  # chained in order
    assert verify(store.engine) == []


def test_records_chained_per_patient_before_lanes_still_verify(store: Services) -> None:
    """Records written before migration 0019 have no `chain`: each patient's chain is re-walked as it
    was written (the hash covers no `chain` field), beside the lanes; a change to one still shows."""
    rows, prev = [], GENESIS
    for n in range(3):
        row = AuditRecord("read", 200, system_caller(), f"2026-01-01T00:00:0{n}.000000", "Patient", "old-p", 1,
                          ("old-p",)).row()
        row["prev_hash"], row["hash"] = prev, chain_hash(prev, row)
        prev = row["hash"]
        rows.append(row)
    with store.engine.begin() as conn:
        conn.execute(insert(audit), rows)
        conn.execute(insert(audit_chain).values(partition_key="old-p", last_seq=3, last_hash=prev))
    with store.engine.begin() as conn:  # and new records, in a lane
        append(conn, [AuditRecord("read", 200, system_caller(), "2026-11-28T23:00:00.000000", "Patient", "old-p",
                                  1, ("old-p",))])
    assert verify(store.engine) == []
    with store.engine.begin() as conn:  # a head that does not match its chain's last record
        conn.execute(update(audit_chain).where(audit_chain.c.partition_key == "old-p").values(last_hash="0" * 64))
    assert verify(store.engine) == ["old-p"]


def test_concurrent_writers_on_postgresql_take_different_lanes_without_waiting(store: Services) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("lanes are taken concurrently on PostgreSQL only (SQLite has one writer)")
    rec = AuditRecord("read", 200, system_caller(), "2026-11-28T23:00:00.000000", "Patient", "x", 1, ("x",))
    with store.engine.begin() as conn:  # the lanes exist (made by the migration; the test store empties tables)
        append(conn, [rec])
    with store.engine.connect() as first, store.engine.connect() as second, first.begin():
        first.execute(text("SET LOCAL lock_timeout = '2s'"))
        append(first, [rec])
        held = first.execute(select(audit.c.chain).order_by(audit.c.seq.desc()).limit(1)).scalar_one()
        with second.begin():  # would time out if it waited for the first transaction's lane
            second.execute(text("SET LOCAL lock_timeout = '2s'"))
            append(second, [rec])
            other = second.execute(select(audit.c.chain).order_by(audit.c.seq.desc()).limit(1)).scalar_one()
    assert held != other
    assert verify(store.engine) == []


def test_every_patient_a_search_showed_finds_its_record_before_and_after_indexing(client: TestClient,
                                                                                 store: Services) -> None:
    """A search's record names each patient whose data it showed. The first is its home partition;
    the others are found by scanning the newest records until housekeeping indexes them
    (`index_patients`), then through `audit_patient`, with the scan no longer reaching them."""
    people = [create(client, patient(family=f"Each{n}")) for n in range(3)]
    client.get("/fhir/Patient?family=Each&_count=10")
    with store.engine.connect() as conn:
        seq, home, named = conn.execute(select(audit.c.seq, audit.c.partition_key, audit.c.patients)
                                        .where(audit.c.interaction == "search-type")).one()
    assert set(named.split()) == {p["id"] for p in people}
    others = [p["id"] for p in people if p["id"] != home]

    def found(pid: str) -> list[int]:
        return [r["seq"] for r in search(store.engine, AuditFilter(patients=frozenset({pid}),
                                                                   interactions=("search-type",)), 10)]

    assert all(found(pid) == [seq] for pid in [home, *others])  # the tail scan
    assert index_patients(store.engine, "2000-01-01T00:00:00.000000") == 0  # nothing that old: nothing moves
    assert index_patients(store.engine, "9999-01-01T00:00:00.000000") >= 1
    assert index_patients(store.engine, "9999-01-01T00:00:00.000000") == 0  # up to date
    with store.engine.connect() as conn:
        indexed = conn.execute(select(audit_patient.c.patient_id).where(audit_patient.c.seq == seq)).scalars().all()
        mark = int(conn.execute(select(node_setting.c.value).where(node_setting.c.name == WATERMARK)).scalar_one())
    assert sorted(indexed) == sorted(others)  # the home partition is indexed with the record itself
    assert mark >= seq  # the scan no longer reaches this record: the index answers
    assert all(found(pid) == [seq] for pid in [home, *others])


def test_reads_fail_closed_when_audit_cannot_be_committed(client: TestClient, store: Services) -> None:
    p = create(client, patient())
    with mock.patch("sharedcare.storage.audit_store.append", side_effect=RuntimeError("disk full")):
        r = client.get(f"/fhir/Patient/{p['id']}")
    assert r.status_code == 503
    assert "Ann" not in r.text
    assert p["id"] not in r.text


def test_requests_refused_before_reaching_the_store_are_audited(client: TestClient, store: Services) -> None:
    client.post("/fhir/Patient", content=b"{not json", headers={"Content-Type": FHIR_JSON})
    client.get("/fhir/Spaceship/1")
    client.post("/fhir/Patient", content=b"x", headers={"Content-Type": "text/plain"})
    rows = audit_rows(store)
    assert [(r["interaction"], r["status"], r["res_type"]) for r in rows] == [
        ("create", 400, "Patient"), ("read", 404, "Spaceship"), ("create", 415, "Patient")]


def test_validate_operation_is_audited_once(client: TestClient, store: Services) -> None:
    client.post("/fhir/Patient/$validate", json=patient(), headers={"Content-Type": FHIR_JSON})
    assert [(r["interaction"], r["status"]) for r in audit_rows(store)] == [("operation", 200)]
