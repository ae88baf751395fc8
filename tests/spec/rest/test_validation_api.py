"""The REST API refuses invalid resources with an OperationOutcome naming each path; $validate."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.spec.rest.helpers import FHIR_JSON, patient


def test_invalid_resources_are_refused_and_nothing_is_stored(client: TestClient) -> None:
    bad = {"resourceType": "Patient", "gender": "unknown-code", "birthDate": "1970-13-45", "madeUp": 1}
    r = client.post("/fhir/Patient", json=bad, headers={"Content-Type": FHIR_JSON})
    assert r.status_code in (400, 422)
    paths = {p for i in r.json()["issue"] for p in i.get("expression", [])}
    assert {"Patient.gender", "Patient.birthDate"} <= {p.split("[")[0] for p in paths} | paths
    assert client.get("/fhir/Patient").json()["total"] == 0


def test_an_nhs_number_must_pass_the_modulus_11_check(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient(nhs="9434765918"), headers={"Content-Type": FHIR_JSON})
    assert r.status_code in (400, 422)
    assert client.post("/fhir/Patient", json=patient(nhs="9434765919"),
                       headers={"Content-Type": FHIR_JSON}).status_code == 201


def test_validate_operation_never_stores(client: TestClient) -> None:
    ok = client.post("/fhir/Patient/$validate", json=patient(), headers={"Content-Type": FHIR_JSON})
    assert ok.status_code == 200
    assert all(i["severity"] not in ("error", "fatal") for i in ok.json()["issue"])
    bad = client.post("/fhir/Patient/$validate", json={"resourceType": "Patient", "gender": 3},
                      headers={"Content-Type": FHIR_JSON})
    assert bad.status_code == 200
    assert any(i["severity"] == "error" for i in bad.json()["issue"])
    assert client.get("/fhir/Patient").json()["total"] == 0
