"""Conditional create, update and delete; search by _id, _lastUpdated and identifier."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.spec.rest.helpers import FHIR_JSON, NHS, create, patient


def test_if_none_exist_creates_once_then_returns_the_match(client: TestClient) -> None:
    headers = {"Content-Type": FHIR_JSON, "If-None-Exist": f"identifier={NHS}|9434765919"}
    first = client.post("/fhir/Patient", json=patient(nhs="9434765919"), headers=headers)
    second = client.post("/fhir/Patient", json=patient(nhs="9434765919"), headers=headers)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert client.get("/fhir/Patient").json()["total"] == 1


def test_if_none_exist_matching_several_is_412(client: TestClient) -> None:
    create(client, patient(nhs="9434765919"))
    create(client, patient(nhs="9434765919"))
    r = client.post("/fhir/Patient", json=patient(nhs="9434765919"),
                    headers={"Content-Type": FHIR_JSON, "If-None-Exist": f"identifier={NHS}|9434765919"})
    assert r.status_code == 412


def test_conditional_update_creates_then_updates(client: TestClient) -> None:
    url = f"/fhir/Patient?identifier={NHS}|9434765919"
    r1 = client.put(url, json=patient("First", nhs="9434765919"), headers={"Content-Type": FHIR_JSON})
    assert r1.status_code == 201
    r2 = client.put(url, json=patient("Second", nhs="9434765919"), headers={"Content-Type": FHIR_JSON})
    assert r2.status_code == 200
    assert r2.json()["id"] == r1.json()["id"]
    assert r2.json()["meta"]["versionId"] == "2"


def test_conditional_delete(client: TestClient) -> None:
    p = create(client, patient(nhs="9434765919"))
    assert client.delete(f"/fhir/Patient?identifier={NHS}|9434765919").status_code == 204
    assert client.get(f"/fhir/Patient/{p['id']}").status_code == 410


def test_conditional_interactions_refuse_unknown_criteria(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient(),
                    headers={"Content-Type": FHIR_JSON, "If-None-Exist": "nonsense=1"})
    assert r.status_code == 400
    assert client.get("/fhir/Patient").json()["total"] == 0


def test_search_by_id_identifier_and_last_updated(client: TestClient) -> None:
    a = create(client, patient(nhs="9434765919"))
    b = create(client, patient(nhs="9434765870"))
    assert [e["resource"]["id"] for e in client.get(f"/fhir/Patient?_id={a['id']}").json()["entry"]] == [a["id"]]
    found = client.get(f"/fhir/Patient?identifier={NHS}|9434765870").json()
    assert [e["resource"]["id"] for e in found["entry"]] == [b["id"]]
    assert client.get("/fhir/Patient?identifier=9434765870").json()["total"] == 1
    assert client.get(f"/fhir/Patient?_id={a['id']},{b['id']}").json()["total"] == 2
    assert client.get("/fhir/Patient?_lastUpdated=gt2000-01-01").json()["total"] == 2
    assert client.get("/fhir/Patient?_lastUpdated=lt2000-01-01").json()["total"] == 0
    assert client.get("/fhir/Patient?_lastUpdated=notadate").status_code == 400


def test_unknown_parameters_are_ignored_unless_strict(client: TestClient) -> None:
    create(client, patient())
    assert client.get("/fhir/Patient?madeup=1").json()["total"] == 1
    assert client.get("/fhir/Patient?madeup=1", headers={"Prefer": "handling=strict"}).status_code == 400


def test_paging_follows_next_links_without_repeats_while_others_write(client: TestClient) -> None:
    ids = [create(client, patient(f"P{i}"))["id"] for i in range(7)]
    page = client.get("/fhir/Patient?_count=3").json()
    seen = [e["resource"]["id"] for e in page["entry"]]
    create(client, patient("Late"))  # written while paging: must not disturb the pages
    while (nxt := next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)):
        page = client.get(nxt.replace("http://testserver", "")).json()
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
    assert seen == ids
    assert client.get("/fhir/Patient?_count=0").json()["total"] == 8
    assert "entry" not in client.get("/fhir/Patient?_count=0").json()


def test_a_tampered_page_link_is_refused(client: TestClient) -> None:
    for i in range(3):
        create(client, patient(f"P{i}"))
    page = client.get("/fhir/Patient?_count=1").json()
    nxt = next(lk["url"] for lk in page["link"] if lk["relation"] == "next")
    bad = nxt[:-3] + ("AAA" if not nxt.endswith("AAA") else "BBB")
    assert client.get(bad.replace("http://testserver", "")).status_code == 400


def test_count_above_the_maximum_is_reduced_and_the_self_link_shows_it(client: TestClient) -> None:
    create(client, patient())
    body = client.get("/fhir/Patient?_count=100000").json()
    self_link = next(lk["url"] for lk in body["link"] if lk["relation"] == "self")
    assert "_count=1000" in self_link
