"""Create and read (R4 http.html#create, #read, #vread): server ids, versions, stored bytes served as-is."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.spec.rest.helpers import FHIR_JSON, create, observation, patient


def test_create_assigns_an_id_version_1_and_a_location(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient(id="client-chosen"), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 201
    body = r.json()
    assert body["id"] != "client-chosen"  # R4: the server ignores an id on create
    assert body["meta"]["versionId"] == "1"
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{body['id']}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert "last-modified" in r.headers


def test_read_returns_exactly_the_stored_bytes(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json=patient(), headers={"Content-Type": FHIR_JSON})
    read = client.get(f"/fhir/Patient/{created.json()['id']}")
    assert read.status_code == 200
    assert read.content == created.content
    assert read.headers["etag"] == 'W/"1"'


def test_decimals_keep_their_precision_on_every_path(client: TestClient) -> None:
    pid = create(client, patient())["id"]
    r = client.post("/fhir/Observation", content=observation(pid, "1.50"), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 201, r.text
    assert b'"value":1.50' in r.content
    oid = r.json()["id"]
    assert b'"value":1.50' in client.get(f"/fhir/Observation/{oid}").content
    assert b'"value":1.50' in client.get(f"/fhir/Observation/{oid}/_history/1").content
    assert b'"value":1.50' in client.get(f"/fhir/Observation?_id={oid}").content
    assert b'value="1.50"' in client.get(f"/fhir/Observation/{oid}?_format=xml").content


def test_unknown_id_is_404_with_an_operation_outcome(client: TestClient) -> None:
    r = client.get("/fhir/Patient/does-not-exist")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["code"] == "not-found"


def test_unknown_resource_type_is_404(client: TestClient) -> None:
    r = client.get("/fhir/Spaceship/1")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


def test_vread_returns_each_version(client: TestClient) -> None:
    p = create(client, patient("One"))
    p["name"][0]["family"] = "Two"
    assert client.put(f"/fhir/Patient/{p['id']}", json=p, headers={"Content-Type": FHIR_JSON}).status_code == 200
    v1 = client.get(f"/fhir/Patient/{p['id']}/_history/1")
    v2 = client.get(f"/fhir/Patient/{p['id']}/_history/2")
    assert v1.json()["name"][0]["family"] == "One"
    assert v2.json()["name"][0]["family"] == "Two"
    assert client.get(f"/fhir/Patient/{p['id']}/_history/3").status_code == 404


def test_the_body_must_match_the_url_type(client: TestClient) -> None:
    r = client.post("/fhir/Observation", json=patient(), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400
    assert client.get("/fhir/Patient").json()["total"] == 0
