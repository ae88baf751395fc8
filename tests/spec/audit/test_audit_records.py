"""Every interaction, allowed or denied, leaves exactly one audit record; chains verify; the database
refuses changes to the trail (AU3); reads fail closed when the audit store cannot commit (AU2)."""

from __future__ import annotations

from unittest import mock

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from sharedcare.app import Services
from sharedcare.storage.audit_store import verify
from sharedcare.storage.tables import audit
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
    try:
        assert verify(store.engine) == [p["id"]]
    finally:  # the PostgreSQL test database is shared by the session's tests: put the guard back
        with store.engine.begin() as conn:
            conn.execute(text(
                "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, "
                "'the audit trail is append-only'); END" if sqlite else
                "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
                "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"))


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
