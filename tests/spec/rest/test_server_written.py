"""Types only the server writes (issue 5, safety property 3): an AuditEvent comes from the audit
trail, so no client can create, change or delete one, alone or inside a bundle, and the capability
statement says so."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.spec.rest.helpers import FHIR_JSON

HEADERS = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}

EVENT = {"resourceType": "AuditEvent", "type": {"system": "http://dicom.nema.org/resources/ontology/DCM",
                                                "code": "110110"},
         "recorded": "2026-11-28T10:00:00Z", "agent": [{"requestor": True, "who": {"display": "someone"}}],
         "source": {"observer": {"display": "a client"}}}


def _refused(r) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == 405, r.text
    issue = r.json()["issue"][0]
    assert "audit trail" in issue["diagnostics"]


def test_a_client_cannot_create_update_patch_or_delete_an_audit_event(client: TestClient) -> None:
    _refused(client.post("/fhir/AuditEvent", json=EVENT, headers=HEADERS))
    _refused(client.put("/fhir/AuditEvent/forged", json={**EVENT, "id": "forged"}, headers=HEADERS))
    _refused(client.put("/fhir/AuditEvent?outcome=0", json=EVENT, headers=HEADERS))
    _refused(client.patch("/fhir/AuditEvent/forged", json=[{"op": "remove", "path": "/agent"}],
                          headers={"Content-Type": "application/json-patch+json"}))
    _refused(client.delete("/fhir/AuditEvent/forged"))
    _refused(client.delete("/fhir/AuditEvent?outcome=0"))
    assert client.get("/fhir/AuditEvent/forged").status_code == 404


def test_a_transaction_carrying_an_audit_event_is_refused_whole(client: TestClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6a3b1c1e-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "name": [{"family": "Kept-Out"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": EVENT, "request": {"method": "POST", "url": "AuditEvent"}}]}
    r = client.post("/fhir", json=bundle, headers=HEADERS)
    assert r.status_code == 405, r.text
    assert client.get("/fhir/Patient?family=Kept-Out&_total=accurate").json()["total"] == 0


def test_the_capability_statement_offers_audit_events_for_reading_only(client: TestClient) -> None:
    resources = client.get("/fhir/metadata", headers=HEADERS).json()["rest"][0]["resource"]
    audit = next(r for r in resources if r["type"] == "AuditEvent")
    assert {i["code"] for i in audit["interaction"]} == {"read", "search-type"}
    assert (audit["updateCreate"], audit["conditionalCreate"], audit["conditionalUpdate"]) == (False, False, False)
    patient = next(r for r in resources if r["type"] == "Patient")
    assert "create" in {i["code"] for i in patient["interaction"]}
