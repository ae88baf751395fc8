"""What a search returns: sorting, includes, summaries and elements, totals and counts, POST
_search, compartment search, ignored parameters, and clear refusals."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sharedcare.settings import Settings
from tests.spec.search.helpers import bundle, error, ids, make, observation, ordered, patient


def test_sort_by_several_keys_both_directions(client: TestClient) -> None:
    a = make(client, patient("Baker", birthDate="1990-01-01"))
    b = make(client, patient("Adams", birthDate="1980-01-01"))
    c = make(client, patient("Adams", birthDate="2000-01-01"))
    d = make(client, patient("Young"))  # no birth date: last either way
    assert ordered(client, "Patient?_sort=birthdate") == [b, a, c, d]
    assert ordered(client, "Patient?_sort=-birthdate") == [c, a, b, d]
    assert ordered(client, "Patient?_sort=family,-birthdate") == [c, b, a, d]
    assert ordered(client, "Patient?_sort=family,-birthdate&_count=1") == [c, b, a, d]  # paged
    assert "sorted" in error(client, "Patient?_sort=nonsense")


def test_include_and_revinclude(client: TestClient) -> None:
    org = make(client, {"resourceType": "Organization", "name": "Trust"})
    ann = make(client, patient("Ann", managingOrganization={"reference": f"Organization/{org}"}))
    obs = make(client, observation(ann), "Observation")
    body = bundle(client, f"Observation?_id={obs}&_include=Observation:subject")
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in body["entry"]}
    assert modes == {("Observation", "match"), ("Patient", "include")}
    body = bundle(client, f"Observation?_id={obs}&_include=Observation:subject&_include:iterate=Patient:organization")
    assert {e["resource"]["resourceType"] for e in body["entry"]} == {"Observation", "Patient", "Organization"}
    body = bundle(client, f"Patient?_id={ann}&_revinclude=Observation:subject")
    assert [(e["resource"]["id"], e["search"]["mode"]) for e in body["entry"]] == [(ann, "match"), (obs, "include")]
    assert "reference parameter" in error(client, "Observation?_include=Observation:status")


def test_summary_and_elements_subset_and_say_so(client: TestClient) -> None:
    pid = make(client, patient("Sum", birthDate="1970-01-01", text={"status": "generated",
                                                                   "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
                               photo=[{"contentType": "image/png", "data": "AAAA"}]))
    res = bundle(client, f"Patient?_id={pid}&_summary=true")["entry"][0]["resource"]
    assert "photo" not in res
    assert "text" not in res
    assert res["birthDate"] == "1970-01-01"
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])
    res = bundle(client, f"Patient?_id={pid}&_elements=name")["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "name"}
    res = bundle(client, f"Patient?_id={pid}&_summary=data")["entry"][0]["resource"]
    assert "text" not in res
    assert "photo" in res
    res = bundle(client, f"Patient?_id={pid}")["entry"][0]["resource"]
    assert "meta" not in res or not any(t.get("code") == "SUBSETTED" for t in res["meta"].get("tag", []))


def test_totals_and_counts(client: TestClient) -> None:
    for name in ("A", "B", "C"):
        make(client, patient(name))
    body = bundle(client, "Patient?_count=2")
    assert body["total"] == 3
    assert len(body["entry"]) == 2
    assert "total" not in bundle(client, "Patient?_total=none")
    counted = bundle(client, "Patient?_summary=count")
    assert counted["total"] == 3
    assert "entry" not in counted
    assert "entry" not in bundle(client, "Patient?_count=0")
    capped = bundle(client, "Patient?_count=100000")
    self_link = next(link["url"] for link in capped["link"] if link["relation"] == "self")
    assert f"_count={Settings().max_page_size}" in self_link
    assert "whole number" in error(client, "Patient?_count=-1")
    assert "whole number" in error(client, "Patient?_count=ten")


def test_estimated_totals_are_exact_up_to_a_cap_and_left_out_beyond(client: TestClient,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from sharedcare.storage import search

    for name in ("A", "B", "C"):
        make(client, patient(name))
    monkeypatch.setattr(search, "ESTIMATE_CAP", 3)
    assert "total" not in bundle(client, "Patient?_count=1")  # at least 3: not counted further
    assert bundle(client, "Patient?_count=1&_total=accurate")["total"] == 3
    assert bundle(client, "Patient?family=a&_count=1")["total"] == 1  # one page: counted for free
    assert bundle(client, "Patient?_count=1&_total=estimate&family=a,b")["total"] == 2


def test_a_chained_search_estimates_no_total_beyond_one_page(client: TestClient) -> None:
    """Counting a chain with other criteria means testing every reference of the named patients
    (thousands for a common name), so the default `_total=estimate` leaves the total out when there
    is more than one page; one page is counted for free and `_total=accurate` always counts."""
    named = make(client, patient("Okafor"))
    for code in ("2339-0", "2339-0", "2339-0", "8302-2"):
        make(client, observation(named, code), "Observation")
    chain = "Observation?subject:Patient.family=okafor&code=2339-0"
    assert "total" not in bundle(client, chain + "&_count=2")
    assert bundle(client, chain + "&_count=2&_total=accurate")["total"] == 3
    assert bundle(client, chain)["total"] == 3
    assert bundle(client, "Observation?subject:Patient.family=okafor&_count=2")["total"] == 4  # no checks


def test_post_search_takes_form_parameters(client: TestClient) -> None:
    ann = make(client, patient("Ann"))
    make(client, patient("Bob"))
    r = client.post("/fhir/Patient/_search", data={"family": "ann"},
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {ann}


def test_compartment_search(client: TestClient) -> None:
    ann = make(client, patient("Ann"))
    bob = make(client, patient("Bob"))
    mine = make(client, observation(ann, "8480-6"), "Observation")
    make(client, observation(bob, "8480-6"), "Observation")
    assert ids(client, f"Patient/{ann}/Observation") == {mine}
    assert ids(client, f"Patient/{ann}/Observation?code=8480-6") == {mine}
    assert ids(client, f"Patient/{bob}/Observation?code=2339-0") == set()


def test_unknown_parameters_are_reported_or_refused(client: TestClient) -> None:
    ann = make(client, patient("Ann"))
    body = bundle(client, "Patient?family=ann&colour=blue")
    matches = [e for e in body["entry"] if e["search"]["mode"] == "match"]
    outcome = [e for e in body["entry"] if e["search"]["mode"] == "outcome"]
    assert [e["resource"]["id"] for e in matches] == [ann]
    assert "colour" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    self_link = next(link["url"] for link in body["link"] if link["relation"] == "self")
    assert "colour" not in self_link
    assert "colour" in error(client, "Patient?colour=blue", prefer="handling=strict")


def test_malformed_searches_are_400_with_an_outcome(client: TestClient) -> None:
    assert "date" in error(client, "Patient?birthdate=yesterday")
    assert "modifier" in error(client, "Patient?birthdate:exact=2000")
    assert "modifier" in error(client, "Patient?family:below=x")
    assert "_total" in error(client, "Patient?_total=some")
    assert "_summary" in error(client, "Patient?_summary=maybe")
    assert error(client, "Unicorn?name=x", 404)
    r = client.get("/fhir/Patient", params={"family": "a\x00b"})
    assert r.status_code == 400
