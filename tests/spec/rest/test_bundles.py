"""Batch and transaction bundles (R4 http.html#transaction): all-or-nothing, urn:uuid resolution."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.spec.rest.helpers import FHIR_JSON, NHS, create, patient


def post_bundle(client: TestClient, bundle: dict[str, Any]):  # type: ignore[no-untyped-def]
    return client.post("/fhir", json=bundle, headers={"Content-Type": FHIR_JSON})


def entry(method: str, url: str, resource: dict[str, Any] | None = None, full_url: str | None = None,
          **request: str) -> dict[str, Any]:
    e: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        e["resource"] = resource
    if full_url:
        e["fullUrl"] = full_url
    return e


def test_transaction_resolves_urn_uuid_references(client: TestClient) -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
           "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"}}
    r = post_bundle(client, {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("POST", "Observation", obs),
        entry("POST", "Patient", patient(), full_url="urn:uuid:11111111-1111-1111-1111-111111111111"),
    ]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    assert [e["response"]["status"] for e in out["entry"]] == ["201 Created", "201 Created"]
    obs_loc, pat_loc = (e["response"]["location"] for e in out["entry"])
    stored = client.get("/fhir/" + obs_loc.split("/_history")[0]).json()
    assert stored["subject"]["reference"] == pat_loc.split("/_history")[0]


def test_transaction_resolves_urn_uuid_links_in_narrative(client: TestClient) -> None:
    """R4 http.html#trules: references in the narrative (<a href="urn:uuid:...">) are rewritten too."""
    pid = "urn:uuid:22222222-2222-2222-2222-222222222222"
    div = (f'<div xmlns="http://www.w3.org/1999/xhtml">Pulse of <a href="{pid}">the patient</a>, '
           '<a href="urn:uuid:99999999-9999-9999-9999-999999999999">not in this bundle</a></div>')
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
           "text": {"status": "generated", "div": div}, "subject": {"reference": pid}}
    r = post_bundle(client, {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("POST", "Observation", obs), entry("POST", "Patient", patient(), full_url=pid)]})
    assert r.status_code == 200, r.text
    obs_loc, pat_loc = (e["response"]["location"].split("/_history")[0] for e in r.json()["entry"])
    stored_div = client.get("/fhir/" + obs_loc).json()["text"]["div"]
    assert f'href="{pat_loc}"' in stored_div
    assert pid not in stored_div
    assert 'href="urn:uuid:99999999-9999-9999-9999-999999999999"' in stored_div  # unknown ones are left alone


def test_transaction_resolves_urn_uuid_references_in_arrays_nested_and_uri_elements(client: TestClient) -> None:
    """R4 http.html#trules: every reference and uri equal to an entry's fullUrl is rewritten, wherever it
    sits (array items, nested elements, extensions); other strings, even equal to a fullUrl's tail, stay."""
    pid = "urn:uuid:33333333-3333-3333-3333-333333333333"
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
           "subject": {"reference": pid},
           "performer": [{"reference": "Practitioner/elsewhere"}, {"reference": pid}],
           "extension": [{"url": "http://example.org/fhir/StructureDefinition/about", "valueUri": pid}],
           "note": [{"text": "33333333-3333-3333-3333-333333333333"}]}
    r = post_bundle(client, {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("POST", "Observation", obs), entry("POST", "Patient", patient(), full_url=pid)]})
    assert r.status_code == 200, r.text
    obs_loc, pat_loc = (e["response"]["location"].split("/_history")[0] for e in r.json()["entry"])
    stored = client.get("/fhir/" + obs_loc).json()
    assert stored["subject"]["reference"] == pat_loc
    assert [p["reference"] for p in stored["performer"]] == ["Practitioner/elsewhere", pat_loc]
    assert stored["extension"][0]["valueUri"] == pat_loc
    assert stored["extension"][0]["url"] == "http://example.org/fhir/StructureDefinition/about"
    assert stored["note"][0]["text"] == "33333333-3333-3333-3333-333333333333"


def test_transaction_is_all_or_nothing(client: TestClient) -> None:
    """CV4: one invalid entry rolls back every other entry."""
    entries = [entry("POST", "Patient", patient(f"P{i}")) for i in range(99)]
    entries.insert(72, entry("POST", "Patient", {"resourceType": "Patient", "gender": "not-a-gender"}))
    r = post_bundle(client, {"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 400
    assert "Bundle.entry[72]" in r.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient").json()["total"] == 0


def test_transaction_honours_a_stale_if_match(client: TestClient) -> None:
    p = create(client, patient())
    p2 = dict(p, gender="male")
    client.put(f"/fhir/Patient/{p['id']}", json=p2, headers={"Content-Type": FHIR_JSON})
    r = post_bundle(client, {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("POST", "Patient", patient("New")),
        entry("PUT", f"Patient/{p['id']}", p, ifMatch='W/"1"'),
    ]})
    assert r.status_code == 412
    assert client.get("/fhir/Patient").json()["total"] == 1


def test_transaction_conditional_create_and_conditional_reference(client: TestClient) -> None:
    existing = create(client, patient(nhs="9434765919"))
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
           "subject": {"reference": f"Patient?identifier={NHS}|9434765919"}}
    r = post_bundle(client, {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("POST", "Patient", patient(nhs="9434765919"), ifNoneExist=f"identifier={NHS}|9434765919"),
        entry("POST", "Observation", obs),
    ]})
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"] == "200 OK"
    assert client.get("/fhir/Patient").json()["total"] == 1
    obs_id = r.json()["entry"][1]["response"]["location"].split("/")[1]
    assert client.get(f"/fhir/Observation/{obs_id}").json()["subject"]["reference"] == f"Patient/{existing['id']}"


def test_batch_entries_succeed_or_fail_independently(client: TestClient) -> None:
    r = post_bundle(client, {"resourceType": "Bundle", "type": "batch", "entry": [
        entry("POST", "Patient", patient()),
        entry("POST", "Patient", {"resourceType": "Patient", "gender": "nope"}),
        entry("GET", "Patient/missing"),
    ]})
    assert r.status_code == 200
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0] == "201 Created"
    assert statuses[1].startswith("400")
    assert statuses[2].startswith("404")
    assert client.get("/fhir/Patient").json()["total"] == 1


def test_a_bundle_must_be_batch_or_transaction(client: TestClient) -> None:
    r = post_bundle(client, {"resourceType": "Bundle", "type": "collection"})
    assert r.status_code == 400


def test_get_entries_read_and_search_and_see_the_transactions_own_writes(client: TestClient) -> None:
    r = post_bundle(client, {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("GET", f"Patient?identifier={NHS}|9434765919"),
        entry("POST", "Patient", patient(nhs="9434765919"), full_url="urn:uuid:22222222-2222-2222-2222-222222222222"),
    ]})
    assert r.status_code == 200, r.text
    found = r.json()["entry"][0]["resource"]
    assert found["type"] == "searchset"
    assert found["total"] == 1  # GETs run last, after the transaction's writes
    pid = found["entry"][0]["resource"]["id"]
    r = post_bundle(client, {"resourceType": "Bundle", "type": "batch", "entry": [entry("GET", f"Patient/{pid}")]})
    assert r.json()["entry"][0]["resource"]["id"] == pid


def test_references_to_a_conditional_updates_full_url_resolve_to_the_resource_it_updates(client: TestClient) -> None:
    """R4 transaction rules: a conditional PUT with a fullUrl; other entries may reference that fullUrl,
    and the reference becomes the resource the criteria found (or the one created)."""
    ident = "https://example.org/mrn|C-1"

    def bundle(family: str) -> dict:
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:6b1f3c94-0d3c-4bb4-9e40-6d3f8f0e5a11",
             "resource": {"resourceType": "Patient", "name": [{"family": family}],
                          "identifier": [{"system": "https://example.org/mrn", "value": "C-1"}]},
             "request": {"method": "PUT", "url": f"Patient?identifier={ident}"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
                          "subject": {"reference": "urn:uuid:6b1f3c94-0d3c-4bb4-9e40-6d3f8f0e5a11"}},
             "request": {"method": "POST", "url": "Observation"}}]}

    first = client.post("/fhir", json=bundle("Ashe"))
    assert first.status_code == 200, first.text
    created = first.json()["entry"][0]["response"]["location"].split("/_history")[0]
    second = client.post("/fhir", json=bundle("Ashe-Brown"))
    assert second.status_code == 200, second.text
    assert second.json()["entry"][0]["response"]["status"] == "200 OK"
    assert second.json()["entry"][0]["response"]["location"].split("/_history")[0] == created
    found = client.get("/fhir/Observation").json()["entry"]
    assert {e["resource"]["subject"]["reference"] for e in found} == {created}
    assert client.get(f"/fhir/{created}").json()["name"][0]["family"] == "Ashe-Brown"
