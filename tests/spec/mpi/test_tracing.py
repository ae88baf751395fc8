"""National tracing of the index's records (issue 6, item 6): `sharedcare mpi trace` checks each record
against PDS once (again after its demographics change) and keeps what PDS said beside it; the source's
Patient is never changed.

A number PDS holds for someone with the record's birth date is verified; one it does not hold, or holds
for someone born another day, is a mismatch and is no longer used for linking; a record without a
number gets the number PDS traces for it, and links by it. PDS out of reach stops the round and loses
nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2 as httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sharedcare.app import Services
from sharedcare.mpi.pds import PdsClient, Person, sandbox_router
from sharedcare.mpi.trace import trace_pending
from sharedcare.storage import mpi_store
from tests.spec.mpi.test_linking import create, linked, patient, person_of, same_person

BASE = "http://pds.test/personal-demographics/FHIR/R4"
MIA, AMINA, ROBERT = "9434765919", "9434765943", "9434765935"
PEOPLE = [
    Person(MIA, "Mia", "Thomas", "female", "2019-03-04", "E1 6AN", "F84008", None),
    Person(AMINA, "Amina", "Begum", "female", "1985-02-03", "E2 7QA", "F84010", None),
    Person(ROBERT, "Robert", "Okonkwo", "male", "1950-07-01", "N1 9GU", "Y03001", None),
]


@pytest.fixture
def pds() -> Iterator[PdsClient]:
    app = FastAPI()
    app.include_router(sandbox_router(PEOPLE), prefix="/personal-demographics/FHIR/R4")
    with TestClient(app, base_url="http://pds.test") as http:
        yield PdsClient(BASE, http=http)


def matcher() -> mpi_store.Matcher:
    return mpi_store.shipped_matcher()


def statuses(store: Services) -> dict[str, int]:
    with store.engine.connect() as conn:
        return mpi_store.trace_counts(conn)


def test_numbers_pds_holds_are_verified_and_the_patient_is_not_changed(
        client: TestClient, store: Services, pds: PdsClient) -> None:
    mia = create(client, patient("Mia", "Thomas", "2019-03-04", nhs=MIA))
    done = trace_pending(store.engine, pds, matcher(), limit=100)
    assert dict(done.checked) == {"verified": 1}
    assert statuses(store) == {"verified": 1}
    assert client.get(f"/fhir/Patient/{mia}").json()["meta"]["versionId"] == "1"
    assert dict(trace_pending(store.engine, pds, matcher(), limit=100).checked) == {}  # checked once


def test_a_number_pds_holds_for_someone_else_is_no_longer_linked_by(
        client: TestClient, store: Services, pds: PdsClient) -> None:
    """Robert's number typed into a record of a man born on another day: a mismatch."""
    wrong = create(client, patient("Rob", "Okonkwo", "1952-07-01", nhs=ROBERT, sex="male"))
    assert person_of(client, wrong)["identifier"][0]["value"] == ROBERT  # type: ignore[index]
    done = trace_pending(store.engine, pds, matcher(), limit=100)
    assert dict(done.checked) == {"mismatch": 1}
    assert "identifier" not in person_of(client, wrong)  # type: ignore[operator]


def test_a_traced_number_links_a_record_that_could_not_be_linked_before(
        client: TestClient, store: Services, pds: PdsClient) -> None:
    """Amina moved: her GP record has her number and new home, the A&E record none and the old home."""
    gp = create(client, patient("Amina", "Begum", "1985-02-03", nhs=AMINA, postcode="E2 7QA"))
    ae = create(client, patient("Amina", "Begum", "1985-02-03", postcode="SE1 7EH"))
    assert not same_person(client, gp, ae)
    done = trace_pending(store.engine, pds, matcher(), limit=100)
    assert done.checked["traced"] == 1
    assert done.relinked == 1
    assert same_person(client, gp, ae)
    assert linked(person_of(client, ae)) == {gp, ae}
    stored = client.get(f"/fhir/Patient/{ae}").json()
    assert "identifier" not in stored
    assert stored["meta"]["versionId"] == "1"


def test_a_changed_record_is_checked_again(client: TestClient, store: Services, pds: PdsClient) -> None:
    mia = create(client, patient("Mia", "Thomas", "2019-03-04", nhs=MIA))
    trace_pending(store.engine, pds, matcher(), limit=100)
    moved = {**patient("Mia", "Thomas", "2019-03-04", nhs=MIA, postcode="N1 9GU"), "id": mia}
    assert client.put(f"/fhir/Patient/{mia}", json=moved, headers={"Content-Type": "application/fhir+json"}) \
        .status_code == 200
    assert statuses(store) == {"unchecked": 1}
    assert dict(trace_pending(store.engine, pds, matcher(), limit=100).checked) == {"verified": 1}


def test_pds_out_of_reach_stops_the_round_and_loses_nothing(client: TestClient, store: Services) -> None:
    create(client, patient("Mia", "Thomas", "2019-03-04", nhs=MIA))

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route to PDS", request=request)
    down = PdsClient(BASE, http=httpx.Client(transport=httpx.MockTransport(refuse)))
    done = trace_pending(store.engine, down, matcher(), limit=100)
    assert done.stopped is not None
    assert "could not be reached" in done.stopped
    assert statuses(store) == {"unchecked": 1}
