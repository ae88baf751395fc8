"""Update, update-as-create, If-Match locking, delete and 410 Gone (R4 http.html#update, #delete)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.spec.rest.helpers import FHIR_JSON, create, patient


def put(client: TestClient, res: dict, **headers: str):  # type: ignore[no-untyped-def]
    return client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res,
                      headers={"Content-Type": FHIR_JSON, **headers})


def test_update_makes_a_new_version(client: TestClient) -> None:
    p = create(client, patient())
    p["gender"] = "female"
    r = put(client, p)
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "2"
    assert r.headers["etag"] == 'W/"2"'


def test_update_as_create_uses_the_client_id(client: TestClient) -> None:
    r = put(client, patient(id="nhs-9434765919"))
    assert r.status_code == 201
    assert r.json()["id"] == "nhs-9434765919"
    assert client.get("/fhir/Patient/nhs-9434765919").status_code == 200


def test_update_needs_the_same_id_in_body_and_url(client: TestClient) -> None:
    r = client.put("/fhir/Patient/a", json=patient(id="b"), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400
    assert client.get("/fhir/Patient/a").status_code == 404


def test_a_bad_id_is_refused(client: TestClient) -> None:
    r = client.put("/fhir/Patient/bad%20id", json=patient(id="bad id"), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400


def test_if_match_on_the_current_version_succeeds_and_a_stale_one_gets_412(client: TestClient) -> None:
    p = create(client, patient())
    assert put(client, p, **{"If-Match": 'W/"1"'}).status_code == 200
    stale = put(client, p, **{"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{p['id']}").json()["meta"]["versionId"] == "2"


def test_delete_then_read_is_410_and_history_keeps_every_version(client: TestClient) -> None:
    """CV6: a resource written 5 times then deleted: each version readable, history total 6, GET 410."""
    p = create(client, patient("V1"))
    for n in range(2, 6):
        p["name"][0]["family"] = f"V{n}"
        assert put(client, p).status_code == 200
    assert client.delete(f"/fhir/Patient/{p['id']}").status_code in (200, 204)
    assert client.get(f"/fhir/Patient/{p['id']}").status_code == 410
    for n in range(1, 6):
        assert client.get(f"/fhir/Patient/{p['id']}/_history/{n}").json()["name"][0]["family"] == f"V{n}"
    assert client.get(f"/fhir/Patient/{p['id']}/_history/6").status_code == 410
    history = client.get(f"/fhir/Patient/{p['id']}/_history").json()
    assert history["total"] == 6
    assert history["entry"][0]["request"]["method"] == "DELETE"
    assert "resource" not in history["entry"][0]


def test_deleting_what_does_not_exist_is_not_an_error(client: TestClient) -> None:
    assert client.delete("/fhir/Patient/never-existed").status_code == 204


def test_update_after_delete_brings_the_resource_back(client: TestClient) -> None:
    p = create(client, patient())
    client.delete(f"/fhir/Patient/{p['id']}")
    r = put(client, p)
    assert r.status_code in (200, 201)
    assert r.json()["meta"]["versionId"] == "3"


def test_prefer_return_minimal_and_operation_outcome(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient(), headers={"Content-Type": FHIR_JSON, "Prefer": "return=minimal"})
    assert r.status_code == 201
    assert r.content == b""
    assert r.headers["location"]
    r = client.post("/fhir/Patient", json=patient(),
                    headers={"Content-Type": FHIR_JSON, "Prefer": "return=OperationOutcome"})
    assert r.status_code == 201
    assert r.json()["resourceType"] == "OperationOutcome"


def test_json_patch(client: TestClient) -> None:
    p = create(client, patient())
    ops = [{"op": "replace", "path": "/name/0/family", "value": "Patched"}, {"op": "add", "path": "/gender",
                                                                              "value": "other"}]
    r = client.patch(f"/fhir/Patient/{p['id']}", json=ops, headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["name"][0]["family"] == "Patched"
    assert r.json()["meta"]["versionId"] == "2"


def test_json_patch_that_makes_the_resource_invalid_is_refused(client: TestClient) -> None:
    p = create(client, patient())
    ops = [{"op": "add", "path": "/gender", "value": "not-a-gender"}]
    r = client.patch(f"/fhir/Patient/{p['id']}", json=ops, headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 400
    assert client.get(f"/fhir/Patient/{p['id']}").json()["meta"]["versionId"] == "1"


def test_json_patch_with_a_stale_if_match_is_412(client: TestClient) -> None:
    p = create(client, patient())
    ops = [{"op": "add", "path": "/gender", "value": "male"}]
    r = client.patch(f"/fhir/Patient/{p['id']}", json=ops,
                     headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"7"'})
    assert r.status_code == 412
