"""What the search spec tests share: creating resources and asking which ids a search finds."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

FHIR_JSON = "application/fhir+json"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def make(client: TestClient, resource: dict[str, Any] | bytes, res_type: str | None = None) -> str:
    """Create a resource; its server id."""
    if isinstance(resource, bytes):
        assert res_type is not None
        r = client.post(f"/fhir/{res_type}", content=resource, headers={"Content-Type": FHIR_JSON})
    else:
        r = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def bundle(client: TestClient, query: str, **headers: str) -> dict[str, Any]:
    """GET /fhir/{query}: the searchset Bundle (asserting a 200)."""
    r = client.get(f"/fhir/{query}", headers=headers)
    assert r.status_code == 200, (query, r.text[:500])
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    return body


def ids(client: TestClient, query: str) -> set[str]:
    """The ids of the matches of a search (every page)."""
    return set(ordered(client, query))


def ordered(client: TestClient, query: str) -> list[str]:
    """The ids of the matches in the order served, following next links."""
    found: list[str] = []
    body = bundle(client, query)
    while True:
        found += [e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "match"]
        nxt = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
        if nxt is None:
            return found
        body = bundle(client, nxt.split("/fhir/", 1)[1])


def error(client: TestClient, query: str, status: int = 400, **headers: str) -> str:
    """The diagnostics of a refused search (asserting the status and an OperationOutcome)."""
    r = client.get(f"/fhir/{query}", headers=headers)
    assert r.status_code == status, (query, r.status_code, r.text[:300])
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


def patient(family: str, given: str = "Ann", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family, "given": [given]}], **extra}


def observation(subject: str, code: str = "2339-0", value: str | None = None, unit: str = "mmol/L",
                **extra: Any) -> bytes:
    """Raw JSON so a decimal literal is exactly as written."""
    import json

    body: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                            "code": {"coding": [{"system": LOINC, "code": code}]},
                            "subject": {"reference": f"Patient/{subject}"}, **extra}
    text = json.dumps(body)
    if value is not None:
        text = text[:-1] + f', "valueQuantity": {{"value": {value}, "unit": "{unit}", "system": "{UCUM}", ' \
                           f'"code": "{unit}"}}}}'
    return text.encode()
