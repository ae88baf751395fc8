"""Small builders the REST spec tests share."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

FHIR_JSON = "application/fhir+json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def patient(family: str = "Smith", nhs: str | None = None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family, "given": ["Ann"]}],
                           "birthDate": "1970-01-01", **extra}
    if nhs:
        res["identifier"] = [{"system": NHS, "value": nhs}]
    return res


def observation(patient_id: str, value: str = "1.50") -> bytes:
    """Raw JSON so the decimal literal is exactly as written."""
    return (
        '{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org",'
        f'"code":"2339-0"}}]}},"subject":{{"reference":"Patient/{patient_id}"}},'
        f'"valueQuantity":{{"value":{value},"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"}}}}'
    ).encode()


def create(client: TestClient, resource: dict[str, Any], **headers: str) -> dict[str, Any]:
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource,
                    headers={"Content-Type": FHIR_JSON, **headers})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body
