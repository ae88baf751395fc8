"""The patient index links every source Patient to a person as it is written (issue 6, items 1 to 4).

Each Patient written through the store is matched, in its own write transaction, against the stored
records sharing a blocking key: a certain match joins that record's person, anything else starts a new
person, and possible matches wait in the review queue. The person is served as a read-only FHIR
`Person` whose links show only the Patients the caller may see. Staff (or the node) merge, unmerge and
unlink persons; every change is audited and kept in the link history. A source's Patient resource is
never changed by matching.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from sharedcare.access.context import Caller
from sharedcare.app import Services, create_app
from sharedcare.mpi.normalise import NHS_NUMBER_SYSTEM
from sharedcare.settings import Settings
from sharedcare.storage import audit_store
from tests.conftest import token_for

FHIR = {"Content-Type": "application/fhir+json"}
# Valid NHS numbers (modulus 11), and one that fails its check.
AMARA, ZAINAB, KWAME, MOTHER = "9434765919", "9434765927", "9434765935", "9434765870"
BAD_CHECK = "9434765918"


def patient(given: str | None, family: str, birth: str, *, nhs: str | None = None, postcode: str = "E1 6AN",
            sex: str = "female", former: str | None = None) -> dict[str, Any]:
    name: dict[str, Any] = {"use": "official", "family": family}
    if given:
        name["given"] = [given]
    body: dict[str, Any] = {"resourceType": "Patient", "name": [name], "birthDate": birth, "gender": sex,
                            "address": [{"use": "home", "postalCode": postcode}]}
    if former:
        body["name"].append({"use": "maiden", "family": former, "given": [given] if given else []})
    if nhs:
        body["identifier"] = [{"system": NHS_NUMBER_SYSTEM, "value": nhs}]
    return body


def create(client: TestClient, body: dict[str, Any]) -> str:
    made = client.post("/fhir/Patient", json=body, headers=FHIR)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def person_of(client: TestClient, patient_id: str) -> dict[str, Any] | None:
    got = client.get("/fhir/Person", params={"link": f"Patient/{patient_id}"})
    assert got.status_code == 200, got.text
    entries = got.json().get("entry", [])
    return entries[0]["resource"] if entries else None


def linked(person: dict[str, Any] | None) -> set[str]:
    return {link["target"]["reference"].removeprefix("Patient/") for link in (person or {}).get("link", [])}


def same_person(client: TestClient, a: str, b: str) -> bool:
    pa, pb = person_of(client, a), person_of(client, b)
    assert pa is not None
    assert pb is not None
    return bool(pa["id"] == pb["id"])


def open_reviews(client: TestClient) -> list[dict[str, Any]]:
    got = client.get("/fhir/Person/$review-queue")
    assert got.status_code == 200, got.text
    return [{p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in r["part"]}
            for r in got.json()["parameter"] if r["name"] == "review"]


def parameters(**values: Any) -> dict[str, Any]:
    out = []
    for name, value in values.items():
        if isinstance(value, dict):
            out.append({"name": name, "valueReference": value})
        elif name == "decision":
            out.append({"name": name, "valueCode": value})
        else:
            out.append({"name": name, "valueString": value})
    return {"resourceType": "Parameters", "parameter": out}


# -- linking on write ---------------------------------------------------------------------------------

def test_two_sources_records_of_one_person_are_linked_to_one_person(client: TestClient) -> None:
    gp = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    hospital = create(client, patient("AMARA", "OKAFOR", "1984-02-29", nhs=AMARA, postcode="e16an"))
    person = person_of(client, gp)
    assert person is not None
    assert linked(person) == {gp, hospital}
    assert person["resourceType"] == "Person"
    assert person["identifier"] == [{"system": NHS_NUMBER_SYSTEM, "value": AMARA}]
    assert {link["assurance"] for link in person["link"]} == {"level3"}  # the matcher's links
    read = client.get(f"/fhir/Person/{person['id']}")
    assert read.status_code == 200
    assert linked(read.json()) == {gp, hospital}
    assert open_reviews(client) == []


def test_matching_never_changes_the_source_patient(client: TestClient) -> None:
    body = patient("Amara", "Okafor", "1984-02-29", nhs=AMARA)
    gp = create(client, body)
    create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    stored = client.get(f"/fhir/Patient/{gp}").json()
    assert stored["meta"]["versionId"] == "1"
    assert "link" not in stored
    assert stored["identifier"] == body["identifier"]


def test_twins_with_their_own_nhs_numbers_stay_two_people_and_are_not_queued(client: TestClient) -> None:
    a = create(client, patient("Amara", "Okafor", "2019-03-04", nhs=AMARA))
    b = create(client, patient("Zainab", "Okafor", "2019-03-04", nhs=ZAINAB))
    assert not same_person(client, a, b)
    assert open_reviews(client) == []


def test_two_different_valid_nhs_numbers_never_link_automatically(client: TestClient) -> None:
    a = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    b = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=ZAINAB))
    assert not same_person(client, a, b)
    [review] = open_reviews(client)
    assert {review["patient"]["reference"], review["other"]["reference"]} == {f"Patient/{a}", f"Patient/{b}"}
    assert review["heldBack"] == "different-nhs-numbers"


def test_an_invalid_nhs_number_is_refused_by_the_api_and_links_nothing(client: TestClient) -> None:
    """The FHIR API refuses an NHS number failing its check (the store's validation); a feed keeps such a
    number as the source's own unverified identifier (issue 7), which matching never reads."""
    gp = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    refused = client.post("/fhir/Patient", json=patient("Amara", "Okafor", "1984-02-29", nhs=BAD_CHECK), headers=FHIR)
    assert refused.status_code == 400
    kept = patient("Amara", "Okafor", "1984-02-29")
    kept["identifier"] = [{"system": "https://fhir.example-trust.nhs.uk/Id/unverified-nhs-number", "value": BAD_CHECK}]
    ae = create(client, kept)
    person = person_of(client, gp)
    assert linked(person) == {gp, ae}  # by name, birth date, sex and postcode
    assert person is not None
    assert person["identifier"] == [{"system": NHS_NUMBER_SYSTEM, "value": AMARA}]


def test_a_changed_surname_still_links_by_nhs_number_and_former_name(client: TestClient) -> None:
    before = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    after = create(client, patient("Amara", "Bello", "1984-02-29", nhs=AMARA, former="Okafor", postcode="N1 9GU"))
    assert same_person(client, before, after)


def test_a_baby_on_its_mothers_nhs_number_is_not_linked_to_the_mother(client: TestClient) -> None:
    mother = create(client, patient("Grace", "Adeyemi", "1990-06-01", nhs=MOTHER))
    baby = create(client, patient("Baby", "Adeyemi", "2026-11-20", nhs=MOTHER, sex="male"))
    assert not same_person(client, mother, baby)


def test_same_name_and_birth_date_in_different_districts_is_a_review_not_a_link(client: TestClient) -> None:
    a = create(client, patient("John", "Smith", "1970-01-01", postcode="E1 6AN", sex="male"))
    b = create(client, patient("John", "Smith", "1970-01-01", postcode="SW1A 1AA", sex="male"))
    assert not same_person(client, a, b)
    [review] = open_reviews(client)
    assert "name-and-birth-date-only" in str(review.get("heldBack"))


def test_a_record_with_nothing_to_match_on_is_a_person_of_its_own(client: TestClient) -> None:
    unknown = create(client, {"resourceType": "Patient", "name": [{"family": "UNKNOWN", "given": ["UNKNOWN"]}]})
    other = create(client, {"resourceType": "Patient", "name": [{"family": "UNKNOWN", "given": ["UNKNOWN"]}]})
    assert not same_person(client, unknown, other)


def test_records_of_one_person_in_one_transaction_are_linked(client: TestClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:00000000-0000-0000-0000-00000000000{i}", "resource": body,
         "request": {"method": "POST", "url": "Patient"}}
        for i, body in enumerate([patient("Amara", "Okafor", "1984-02-29", nhs=AMARA),
                                  patient("Amara", "Okafor", "1984-02-29", nhs=AMARA)])]}
    done = client.post("/fhir", json=bundle, headers=FHIR)
    assert done.status_code == 200, done.text
    ids = [e["response"]["location"].split("/")[1] for e in done.json()["entry"]]
    assert same_person(client, ids[0], ids[1])


# -- changes to source records ------------------------------------------------------------------------

def test_a_record_corrected_to_someone_else_moves_to_that_persons_record(client: TestClient) -> None:
    amara = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    kwame = create(client, patient("Kwame", "Mensah", "1955-11-30", nhs=KWAME, postcode="N1 9GU", sex="male"))
    wrong = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    assert same_person(client, wrong, amara)
    fixed = patient("Kwame", "Mensah", "1955-11-30", nhs=KWAME, postcode="N1 9GU", sex="male")
    assert client.put(f"/fhir/Patient/{wrong}", json={**fixed, "id": wrong}, headers=FHIR).status_code == 200
    assert same_person(client, wrong, kwame)
    assert linked(person_of(client, amara)) == {amara}


def test_an_update_that_changes_no_demographics_keeps_the_link(client: TestClient) -> None:
    a = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    b = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    before = person_of(client, b)
    body = {**patient("Amara", "Okafor", "1984-02-29", nhs=AMARA), "id": b, "active": True}
    assert client.put(f"/fhir/Patient/{b}", json=body, headers=FHIR).status_code == 200
    assert person_of(client, b) == before
    assert same_person(client, a, b)


def test_a_deleted_record_leaves_its_person(client: TestClient) -> None:
    a = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    b = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    person = person_of(client, a)
    assert person is not None
    assert client.delete(f"/fhir/Patient/{b}").status_code == 204
    assert linked(client.get(f"/fhir/Person/{person['id']}").json()) == {a}
    assert client.get("/fhir/Person", params={"link": f"Patient/{b}"}).json()["total"] == 0


# -- Person is read-only and shows only what the caller may see ----------------------------------------

def test_person_is_kept_by_the_index_and_cannot_be_written(client: TestClient) -> None:
    made = client.post("/fhir/Person", json={"resourceType": "Person"}, headers=FHIR)
    assert made.status_code == 405
    assert "patient index" in made.json()["issue"][0]["diagnostics"]
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Person"}, "request": {"method": "POST", "url": "Person"}}]}
    done = client.post("/fhir", json=bundle, headers=FHIR)
    assert done.status_code == 200
    assert done.json()["entry"][0]["response"]["status"].startswith("405")
    assert client.get("/fhir/Person/unknown-person").status_code == 404


def test_person_search_takes_a_patient_reference_and_says_so_otherwise(client: TestClient) -> None:
    got = client.get("/fhir/Person", params={"name": "Okafor"})
    assert got.status_code == 400
    assert "link" in got.json()["issue"][0]["diagnostics"]


def _org_client(store: Services, settings: Settings, ods: str) -> TestClient:
    caller = Caller(kind="system", agent_id=f"client:{ods}", scopes=("system/*.cruds",), client_id=ods.lower(),
                    organisation=ods)
    headers = {"Authorization": f"Bearer {token_for(store, settings, caller)}"}
    return TestClient(create_app(settings, store), base_url="http://testserver", headers=headers)


def test_a_person_shows_only_the_records_the_caller_may_see(store: Services, settings: Settings,
                                                            client: TestClient) -> None:
    with _org_client(store, settings, "RF4") as trust, _org_client(store, settings, "F84001") as practice:
        ours = create(trust, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
        theirs = create(practice, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
        assert same_person(client, ours, theirs)  # the node sees both
        person = person_of(trust, ours)
        assert linked(person) == {ours}  # the trust's system sees its own record only
        assert person is not None
        assert person_of(trust, theirs) is None
        assert linked(trust.get(f"/fhir/Person/{person['id']}").json()) == {ours}
        # A source's system may not keep the index.
        refused = trust.post("/fhir/Person/$unlink", json=parameters(patient={"reference": f"Patient/{ours}"},
                                                                       reason="wrong"), headers=FHIR)
        assert refused.status_code == 403


# -- $everything across a person's records -----------------------------------------------------------------

def test_everything_with_mdm_gathers_every_linked_record(client: TestClient) -> None:
    gp = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    hospital = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    for subject, code in ((gp, "8480-6"), (hospital, "8462-4")):
        made = client.post("/fhir/Observation", headers=FHIR, json={
            "resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{subject}"},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}})
        assert made.status_code == 201
    alone = client.get(f"/fhir/Patient/{gp}/$everything").json()
    together = client.get(f"/fhir/Patient/{gp}/$everything", params={"_mdm": "true"}).json()
    assert {e["resource"]["resourceType"] for e in alone["entry"]} == {"Patient", "Observation"}
    assert alone["total"] == 2
    assert together["total"] == 4
    assert {e["resource"]["id"] for e in together["entry"] if e["resource"]["resourceType"] == "Patient"} == \
        {gp, hospital}
    assert client.get(f"/fhir/Patient/{gp}/$everything", params={"_mdm": "yes"}).status_code == 400


# -- the review queue, merges and unmerges ---------------------------------------------------------------

def test_a_reviewer_links_a_possible_match_and_the_decision_is_kept(client: TestClient, store: Services) -> None:
    a = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    b = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=ZAINAB))
    [review] = open_reviews(client)
    item = client.get("/fhir/Person/$review-queue", params={"review": review["id"]}).json()
    names = [p["name"] for p in item["parameter"]]
    assert names.count("comparison") > 5
    assert "patientResource" in names
    assert "otherResource" in names
    done = client.post("/fhir/Person/$review-decide", headers=FHIR, json=parameters(
        review=review["id"], decision="link", reason="NHS number superseded; confirmed with the practice"))
    assert done.status_code == 200, done.text
    assert same_person(client, a, b)
    assert {link["assurance"] for link in person_of(client, a)["link"]} == {"level3", "level4"}  # type: ignore[index]
    assert open_reviews(client) == []
    closed = client.get("/fhir/Person/$review-queue", params={"status": "linked"}).json()
    assert closed["parameter"][0]["valueInteger"] == 1
    again = client.post("/fhir/Person/$review-decide", headers=FHIR, json=parameters(
        review=review["id"], decision="apart", reason="second thoughts"))
    assert again.status_code == 409
    decided = audit_store.search(store.engine, audit_store.AuditFilter(interactions=("operation",)), 1000)
    # The decision's audit record commits with the decision itself.
    assert ("$review-decide", 200) in [(r["query"], r["status"]) for r in decided]


def test_kept_apart_records_are_never_linked_or_queued_again(client: TestClient) -> None:
    a = create(client, patient("John", "Smith", "1970-01-01", postcode="E1 6AN", sex="male"))
    b = create(client, patient("John", "Smith", "1970-01-01", postcode="SW1A 1AA", sex="male"))
    [review] = open_reviews(client)
    done = client.post("/fhir/Person/$review-decide", headers=FHIR, json=parameters(
        review=review["id"], decision="apart", reason="different people: checked with both practices"))
    assert done.status_code == 200, done.text
    moved = {**patient("John", "Smith", "1970-01-01", postcode="E1 6AN", sex="male"), "id": b}
    assert client.put(f"/fhir/Patient/{b}", json=moved, headers=FHIR).status_code == 200
    assert not same_person(client, a, b)  # would now be a certain match, but a person decided
    assert open_reviews(client) == []


def test_a_decision_needs_a_reason_and_a_known_decision(client: TestClient) -> None:
    create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    create(client, patient("Amara", "Okafor", "1984-02-29", nhs=ZAINAB))
    [review] = open_reviews(client)
    blank = client.post("/fhir/Person/$review-decide", headers=FHIR,
                        json=parameters(review=review["id"], decision="link", reason="  "))
    assert blank.status_code == 400
    assert "reason" in blank.json()["issue"][0]["diagnostics"]
    odd = client.post("/fhir/Person/$review-decide", headers=FHIR,
                      json=parameters(review=review["id"], decision="maybe", reason="x"))
    assert odd.status_code == 400
    assert len(open_reviews(client)) == 1


def test_merge_then_unmerge_restores_the_links_as_they_were(client: TestClient) -> None:
    a1 = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    a2 = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    k = create(client, patient("Kwame", "Mensah", "1955-11-30", nhs=KWAME, postcode="N1 9GU", sex="male"))
    amara, kwame = person_of(client, a1), person_of(client, k)
    assert amara is not None
    assert kwame is not None
    merged = client.post("/fhir/Person/$merge", headers=FHIR, json=parameters(
        source={"reference": f"Person/{amara['id']}"}, target={"reference": f"Person/{kwame['id']}"},
        reason="registration error"))
    assert merged.status_code == 200, merged.text
    change = merged.json()["parameter"][0]["valueString"]
    assert linked(person_of(client, k)) == {a1, a2, k}
    undone = client.post("/fhir/Person/$unmerge", headers=FHIR, json=parameters(change=change,
                                                                                reason="merged in error"))
    assert undone.status_code == 200, undone.text
    assert person_of(client, a1)["id"] == amara["id"]  # type: ignore[index]
    assert linked(person_of(client, a1)) == {a1, a2}
    assert linked(person_of(client, k)) == {k}
    twice = client.post("/fhir/Person/$unmerge", headers=FHIR, json=parameters(change=change, reason="again"))
    assert twice.status_code == 409


@pytest.mark.parametrize("body", [
    {"resourceType": "Parameters", "parameter": [{"name": "source", "valueReference": {"reference": "Person/x"}}]},
    {"resourceType": "Patient"},
    {"resourceType": "Parameters", "parameter": [{"name": "colour", "valueString": "red"}]},
])
def test_a_malformed_merge_is_refused_with_a_reason(client: TestClient, body: dict[str, Any]) -> None:
    got = client.post("/fhir/Person/$merge", headers=FHIR, json=body)
    assert got.status_code == 400
    assert got.json()["resourceType"] == "OperationOutcome"


def test_an_unlinked_record_stays_apart_when_it_is_updated(client: TestClient) -> None:
    a = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    b = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    done = client.post("/fhir/Person/$unlink", headers=FHIR, json=parameters(
        patient={"reference": f"Patient/{b}"}, reason="a different person on a reused number"))
    assert done.status_code == 200, done.text
    assert not same_person(client, a, b)
    assert {link["assurance"] for link in person_of(client, b)["link"]} == {"level4"}  # type: ignore[index]
    body = {**patient("Amara", "Okafor", "1984-02-29", nhs=AMARA, postcode="N1 9GU"), "id": b}
    assert client.put(f"/fhir/Patient/{b}", json=body, headers=FHIR).status_code == 200
    assert not same_person(client, a, b)


def test_a_sources_merge_of_its_own_records_joins_their_persons_and_can_be_undone(
        store: Services, settings: Settings, client: TestClient) -> None:
    """What an HL7 v2 A40 maps to: the retired record says it is replaced by the survivor."""
    with _org_client(store, settings, "RF4") as trust, _org_client(store, settings, "F84001") as practice:
        survivor = create(trust, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
        temporary = patient(None, "Okafor", "1984-03-01", postcode="N1 9GU")  # an unidentified arrival
        retired = create(trust, temporary)
        assert not same_person(client, survivor, retired)
        merged = {**temporary, "id": retired, "active": False,
                  "link": [{"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}]}
        assert trust.put(f"/fhir/Patient/{retired}", json=merged, headers=FHIR).status_code == 200
        assert same_person(client, survivor, retired)
        # Another source's record is never merged by a source's say-so.
        theirs = create(practice, patient("Kwame", "Mensah", "1955-11-30", nhs=KWAME, sex="male"))
        claim = {**patient("Kwame", "Mensah", "1955-11-30", nhs=KWAME, sex="male"), "id": theirs,
                 "link": [{"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}]}
        assert practice.put(f"/fhir/Patient/{theirs}", json=claim, headers=FHIR).status_code == 200
        assert not same_person(client, survivor, theirs)
    history = client.get("/fhir/Person/$link-history", params={"patient": f"Patient/{retired}"})
    assert history.status_code == 200, history.text
    changes = [{p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in c["part"]}
               for c in history.json()["parameter"]]
    [merge] = [c for c in changes if c["event"] == "merged"]
    assert merge["by"] == "source:RF4"
    assert merge["patient"] == {"reference": f"Patient/{retired}"}
    undone = client.post("/fhir/Person/$unmerge", headers=FHIR,
                         json=parameters(change=merge["change"], reason="the trust merged in error"))
    assert undone.status_code == 200, undone.text
    assert not same_person(client, survivor, retired)


def test_housekeeping_links_patients_the_index_does_not_hold(client: TestClient, store: Services) -> None:
    """A store restored without its index (or loaded with linking deferred) is linked by the node's
    routine chores, a bounded number at a time."""
    from sqlalchemy import delete

    from sharedcare.app import housekeep
    from sharedcare.storage.tables import mpi_link, mpi_person, mpi_record

    a = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    b = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    with store.engine.begin() as conn:
        for table in (mpi_record, mpi_link, mpi_person):
            conn.execute(delete(table))
    assert person_of(client, a) is None
    housekeep(store)
    assert same_person(client, a, b)


def test_housekeeping_looks_only_at_patients_written_since_its_last_complete_round(
        client: TestClient, store: Services) -> None:
    from sqlalchemy import delete, select

    from sharedcare.app import housekeep
    from sharedcare.storage import mpi_store
    from sharedcare.storage.tables import mpi_link, mpi_record, node_setting

    a = create(client, patient("Amara", "Okafor", "1984-02-29", nhs=AMARA))
    housekeep(store)  # nothing missing: the mark moves past a
    with store.engine.connect() as conn:
        assert conn.execute(select(node_setting.c.value).where(node_setting.c.name == mpi_store.CHECKED)).scalar()
    with store.engine.begin() as conn:
        conn.execute(delete(mpi_link).where(mpi_link.c.res_id == a))
        conn.execute(delete(mpi_record).where(mpi_record.c.res_id == a))
    housekeep(store)
    assert person_of(client, a) is None  # below the mark: left to `sharedcare mpi rebuild`
    assert mpi_store.rebuild(store.engine, node="local") == 1
    assert linked(person_of(client, a)) == {a}
