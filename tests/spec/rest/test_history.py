"""History at instance, type and system level (R4 http.html#history), paged newest first."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.spec.rest.helpers import FHIR_JSON, create, patient


def test_type_and_system_history(client: TestClient) -> None:
    p = create(client, patient())
    client.put(f"/fhir/Patient/{p['id']}", json=p, headers={"Content-Type": FHIR_JSON})
    create(client, {"resourceType": "Organization", "name": "A practice"})
    assert client.get("/fhir/Patient/_history").json()["total"] == 2
    system = client.get("/fhir/_history").json()
    assert system["total"] == 3
    assert system["type"] == "history"
    assert system["entry"][0]["resource"]["resourceType"] == "Organization"  # newest first


def test_history_pages(client: TestClient) -> None:
    p = create(client, patient())
    for _ in range(4):
        client.put(f"/fhir/Patient/{p['id']}", json=p, headers={"Content-Type": FHIR_JSON})
    page = client.get(f"/fhir/Patient/{p['id']}/_history?_count=2").json()
    versions = [e["resource"]["meta"]["versionId"] for e in page["entry"]]
    while (nxt := next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)):
        page = client.get(nxt.replace("http://testserver", "")).json()
        versions += [e["resource"]["meta"]["versionId"] for e in page["entry"]]
    assert versions == ["5", "4", "3", "2", "1"]


def test_history_of_an_unknown_resource_is_404(client: TestClient) -> None:
    assert client.get("/fhir/Patient/nope/_history").status_code == 404


def test_history_since(client: TestClient) -> None:
    create(client, patient())
    assert client.get("/fhir/Patient/_history?_since=2000-01-01").json()["total"] == 1
    assert client.get("/fhir/Patient/_history?_since=2999-01-01").json()["total"] == 0
