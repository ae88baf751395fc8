"""`Patient/$match` (FHIR R4 operation; issue 6, item 5).

POST a Parameters with a Patient in `resource` (and optionally `onlyCertainMatches`, `count`); the
answer is a searchset of stored Patients, best first, each with `search.score` (the match
probability) and the match-grade extension. Candidates are looked for only among the Patients the
caller may see. The input is never stored.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from sharedcare.app import Services
from sharedcare.mpi.match import GRADE_EXTENSION
from sharedcare.mpi.normalise import NHS_NUMBER_SYSTEM
from sharedcare.storage import audit_store

FHIR = {"Content-Type": "application/fhir+json"}
MIA, ZOE = "9434765919", "9434765927"


def patient(given: str, family: str, birth: str, nhs: str | None = None, postcode: str = "E1 6AN",
            sex: str = "female", mrn: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family, "given": [given]}],
                            "birthDate": birth, "gender": sex, "address": [{"use": "home", "postalCode": postcode}],
                            "identifier": []}
    if nhs:
        body["identifier"].append({"system": NHS_NUMBER_SYSTEM, "value": nhs})
    if mrn:
        body["identifier"].append({"system": "https://example.org/mrn", "value": mrn})
    return body


def match(client: TestClient, wanted: dict[str, Any], **options: Any) -> Any:
    parameter: list[dict[str, Any]] = [{"name": "resource", "resource": wanted}]
    if "only_certain" in options:
        parameter.append({"name": "onlyCertainMatches", "valueBoolean": options["only_certain"]})
    if "count" in options:
        parameter.append({"name": "count", "valueInteger": options["count"]})
    return client.post("/fhir/Patient/$match", headers=FHIR,
                       json={"resourceType": "Parameters", "parameter": parameter})


@pytest.fixture
def stored(client: TestClient) -> dict[str, str]:
    ids = {}
    for key, body in {
        "mia-gp": patient("Mia", "Thomas", "2019-03-04", nhs=MIA),
        "zoe-gp": patient("Zoe", "Thomas", "2019-03-04", nhs=ZOE),
        "other": patient("Kwame", "Mensah", "1955-11-30", nhs="9434765935", postcode="N1 9GU", sex="male"),
    }.items():
        made = client.post("/fhir/Patient", json=body, headers=FHIR)
        assert made.status_code == 201, made.text
        ids[key] = made.json()["id"]
    return ids


def graded(bundle: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [(e["resource"]["id"], e["search"]["extension"][0]["valueCode"], e["search"]["score"])
            for e in bundle.get("entry", [])]


def test_the_person_is_found_and_graded_certain_and_their_twin_is_not_returned(
        client: TestClient, stored: dict[str, str]) -> None:
    got = match(client, patient("Mia", "Thomas", "2019-03-04", nhs=MIA))
    assert got.status_code == 200, got.text
    bundle = got.json()
    assert (bundle["resourceType"], bundle["type"], bundle["total"]) == ("Bundle", "searchset", 1)
    [(found, grade, score)] = graded(bundle)
    assert (found, grade) == (stored["mia-gp"], "certain")
    assert score > 0.99
    entry = bundle["entry"][0]
    assert entry["search"]["mode"] == "match"
    assert entry["search"]["extension"][0]["url"] == GRADE_EXTENSION
    assert entry["fullUrl"].endswith(f"/Patient/{stored['mia-gp']}")


def test_a_record_without_nhs_number_finds_the_person_by_demographics(client: TestClient,
                                                                      stored: dict[str, str]) -> None:
    """An ambulance crew's record: a typo in the family name, and no NHS number."""
    found = graded(match(client, patient("Mia", "Tomas", "2019-03-04")).json())
    assert found[0][0] == stored["mia-gp"]
    assert found[0][1] in ("certain", "probable", "possible")


def test_an_invalid_nhs_number_in_the_input_is_treated_as_absent_not_refused(client: TestClient,
                                                                            stored: dict[str, str]) -> None:
    got = match(client, patient("Mia", "Thomas", "2019-03-04", nhs="9434765918"))  # wrong check digit
    assert got.status_code == 200
    assert graded(got.json())[0][0] == stored["mia-gp"]


def test_only_certain_matches_gives_one_certain_match_or_none(client: TestClient, stored: dict[str, str]) -> None:
    one = graded(match(client, patient("Mia", "Thomas", "2019-03-04", nhs=MIA), only_certain=True).json())
    assert [(i, g) for i, g, _ in one] == [(stored["mia-gp"], "certain")]
    # A second record of Mia (another source): two certain matches are for a person to resolve.
    client.post("/fhir/Patient", json=patient("Mia", "Thomas", "2019-03-04", nhs=MIA, mrn="H123"), headers=FHIR)
    assert graded(match(client, patient("Mia", "Thomas", "2019-03-04", nhs=MIA), only_certain=True).json()) == []
    assert len(graded(match(client, patient("Mia", "Thomas", "2019-03-04", nhs=MIA)).json())) == 2


def test_count_limits_the_candidates_returned(client: TestClient, stored: dict[str, str]) -> None:
    client.post("/fhir/Patient", json=patient("Mia", "Thomas", "2019-03-04", nhs=MIA, mrn="H123"), headers=FHIR)
    assert len(graded(match(client, patient("Mia", "Thomas", "2019-03-04", nhs=MIA), count=1).json())) == 1


def test_each_match_is_audited_once_naming_the_patients_it_returned(client: TestClient, store: Services,
                                                                  stored: dict[str, str]) -> None:
    match(client, patient("Mia", "Thomas", "2019-03-04", nhs=MIA))
    records = audit_store.search(store.engine, audit_store.AuditFilter(interactions=("operation",)), 10)
    assert [(r["query"], r["status"]) for r in records] == [("$match", 200)]
    assert records[0]["patients"].split() == [stored["mia-gp"]]  # not the twin it looked at and left out


def test_the_input_is_never_stored(client: TestClient, stored: dict[str, str]) -> None:
    before = client.get("/fhir/Patient?_summary=count").json()["total"]
    match(client, patient("Nobody", "Known", "2001-01-01", nhs="9000000009"))
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == before


def test_nothing_alike_is_an_empty_searchset(client: TestClient, stored: dict[str, str]) -> None:
    bundle = match(client, patient("Nobody", "Known", "2001-01-01", postcode="SW19 2AA")).json()
    assert (bundle["type"], bundle["total"], bundle.get("entry")) == ("searchset", 0, None)


@pytest.mark.parametrize(("body", "why"), [
    ({"resourceType": "Patient"}, "takes a Parameters resource"),
    ({"resourceType": "Parameters", "parameter": []}, "exactly one 'resource' parameter"),
    ({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Observation"}}]},
     "holding a Patient"),
    ({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient"}},
                                                   {"name": "count", "valueInteger": 0}]}, "positive valueInteger"),
    ({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient"}},
                                                   {"name": "onlyCertainMatches", "valueString": "yes"}]},
     "valueBoolean"),
    ({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient"}},
                                                   {"name": "fuzzy", "valueBoolean": True}]}, "no parameter 'fuzzy'"),
])
def test_a_bad_request_is_refused_with_its_reason(client: TestClient, body: dict[str, Any], why: str) -> None:
    got = client.post("/fhir/Patient/$match", json=body, headers=FHIR)
    assert got.status_code == 400
    outcome = got.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert why in outcome["issue"][0]["diagnostics"]


def test_the_capability_statement_offers_match(client: TestClient) -> None:
    cs = client.get("/fhir/metadata").json()
    patient_rest = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"name": "match", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match"} \
        in patient_rest["operation"]


def test_an_input_with_fields_of_the_wrong_kind_is_matched_on_what_is_usable(
        client: TestClient, stored: dict[str, str]) -> None:
    """The input is never stored, so it is not validated as a resource would be: fields of the wrong
    kind are ignored rather than failing the operation."""
    odd = patient("Mia", "Thomas", "2019-03-04", nhs=MIA)
    odd["name"][0]["family"] = ["Thomas"]
    odd["address"][0]["postalCode"] = 16
    got = match(client, odd)
    assert got.status_code == 200, got.text
    assert [found for found, _, _ in graded(got.json())][:1] == [stored["mia-gp"]]
