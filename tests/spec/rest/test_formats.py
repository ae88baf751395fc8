"""JSON and XML in both directions; anything else is 406/415 with an OperationOutcome."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.spec.rest.helpers import FHIR_JSON, create, patient

XML_PATIENT = b"""<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir"><name><family value="Xml"/><given value="Ann"/></name>
<birthDate value="1970-01-01"/></Patient>"""


def test_create_in_xml_read_in_json_and_xml(client: TestClient) -> None:
    r = client.post("/fhir/Patient", content=XML_PATIENT, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    pid = r.json()["id"]
    assert client.get(f"/fhir/Patient/{pid}").json()["name"][0]["family"] == "Xml"
    xml = client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/fhir+xml"})
    assert xml.headers["content-type"].startswith("application/fhir+xml")
    assert b'<family value="Xml"/>' in xml.content


def test_format_parameter_overrides_accept(client: TestClient) -> None:
    pid = create(client, patient())["id"]
    r = client.get(f"/fhir/Patient/{pid}?_format=xml", headers={"Accept": "application/fhir+json"})
    assert r.headers["content-type"].startswith("application/fhir+xml")


def test_unsupported_media_types(client: TestClient) -> None:
    r = client.post("/fhir/Patient", content=b"name=x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["resourceType"] == "OperationOutcome"
    pid = create(client, patient())["id"]
    assert client.get(f"/fhir/Patient/{pid}", headers={"Accept": "text/csv"}).status_code == 406


def test_xml_with_a_doctype_or_entity_is_refused(client: TestClient) -> None:
    """IV2: no DTDs, no external entities."""
    evil = (b'<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<Patient xmlns="http://hl7.org/fhir"><name><family value="&x;"/></name></Patient>')
    r = client.post("/fhir/Patient", content=evil, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 400
    assert b"root:" not in r.content
    assert client.get("/fhir/Patient").json()["total"] == 0


def test_malformed_json_and_utf8(client: TestClient) -> None:
    for body in (b"{not json", b'{"resourceType": "Patient", "name": [\xff]}', b"[]", b"{" * 10000):
        r = client.post("/fhir/Patient", content=body, headers={"Content-Type": FHIR_JSON})
        assert r.status_code == 400, body[:20]
        assert r.json()["resourceType"] == "OperationOutcome"


def test_oversized_bodies_are_413(client: TestClient) -> None:
    big = b'{"resourceType":"Patient","text":"' + b"x" * (17 * 1024 * 1024) + b'"}'
    r = client.post("/fhir/Patient", content=big, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 413
