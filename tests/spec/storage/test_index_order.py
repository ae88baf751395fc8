"""Index rows carry their resource's search order key (`created_seq`), however the resource was
written: created alone or in a transaction, updated, or created by update with a client id. Searches
driven by an index lookup depend on it for their order and paging."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from sharedcare.app import Services
from sharedcare.storage.tables import INDEX_TABLES, resource

JSON = {"Content-Type": "application/fhir+json"}


def _mismatches(store: Services) -> list[tuple[str, str, str]]:
    bad = []
    with store.engine.connect() as conn:
        order = {(r.res_type, r.res_id): r.created_seq for r in conn.execute(
            select(resource.c.res_type, resource.c.res_id, resource.c.created_seq))}
        for table in INDEX_TABLES:
            for r in conn.execute(select(table.c.res_type, table.c.res_id, table.c.created_seq)):
                if r.created_seq != order[(r.res_type, r.res_id)]:
                    bad.append((table.name, r.res_type, r.res_id))
    return bad


def test_every_index_row_carries_its_resource_created_seq(client: TestClient, store: Services) -> None:
    one = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"}, headers=JSON).json()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0f5b7a52-3c1e-4f25-9b1a-1d6c1e0a9c01",
         "resource": {"resourceType": "Patient", "gender": "female", "name": [{"family": "Tx"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:0f5b7a52-3c1e-4f25-9b1a-1d6c1e0a9c01"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    assert client.post("/fhir", json=bundle, headers=JSON).status_code == 200
    one["gender"] = "other"
    assert client.put(f"/fhir/Patient/{one['id']}", json=one, headers=JSON).status_code == 200
    own = {"resourceType": "Patient", "id": "client-chosen", "gender": "unknown"}
    assert client.put("/fhir/Patient/client-chosen", json=own, headers=JSON).status_code == 201
    assert _mismatches(store) == []


def test_a_lookup_driven_search_keeps_creation_order_after_updates(client: TestClient) -> None:
    made = [client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"},
                        headers=JSON).json() for _ in range(4)]
    first = made[0]
    first["name"] = [{"family": "Changed"}]
    assert client.put(f"/fhir/Patient/{first['id']}", json=first, headers=JSON).status_code == 200
    found = []
    url = "/fhir/Patient?gender=female&_count=3"
    while url:
        body = client.get(url).json()
        found += [e["resource"]["id"] for e in body.get("entry", [])]
        url = next((lk["url"].split("testserver", 1)[1] for lk in body["link"] if lk["relation"] == "next"), "")
    assert found == [p["id"] for p in made]
