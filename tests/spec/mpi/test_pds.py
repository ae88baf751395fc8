"""National tracing (issue 6, item 6): the PDS client, spoken to the PDS-compatible sandbox that
sharedcare serves from a synthetic London.

The client reads the national record for an NHS number (to verify it) and traces people by
demographics; it reports deaths and restricted (S-flagged) records, whose address and GP PDS
withholds. The sandbox answers the same interactions, never more people than `_max-results`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sharedcare.app import Services, create_app
from sharedcare.errors import ConfigurationError
from sharedcare.mpi.pds import PdsClient, PdsError, PdsUnavailable, Person, sandbox_router
from sharedcare.settings import Settings

BASE = "http://pds.test/personal-demographics/FHIR/R4"
PEOPLE = [
    Person("9434765919", "Mia", "Thomas", "female", "2019-03-04", "E1 6AN", "F84008", None),
    Person("9434765927", "Zoe", "Thomas", "female", "2019-03-04", "E1 6AN", "F84008", None),  # Mia's twin
    Person("9434765935", "Robert", "Okonkwo", "male", "1950-07-01", "N1 9GU", "Y03001", "2026-02-01"),
    Person("9434765943", "Amina", "Begum", "female", "1985-02-03", "E2 7QA", "F84010", None, restricted=True),
]


@pytest.fixture
def pds() -> Iterator[PdsClient]:
    app = FastAPI()
    app.include_router(sandbox_router(PEOPLE), prefix="/personal-demographics/FHIR/R4")
    with TestClient(app, base_url="http://pds.test") as http:
        yield PdsClient(BASE, http=http)


def test_the_record_for_an_nhs_number_is_read_and_verified(pds: PdsClient) -> None:
    got = pds.get("943 476 5919")
    assert got is not None
    assert (got.nhs_number, got.family, got.given, got.birth_date, got.gender) == \
        ("9434765919", "Thomas", ("Mia",), "2019-03-04", "female")
    assert (got.postcode, got.gp, got.deceased, got.restricted) == ("E1 6AN", "F84008", None, False)
    assert pds.verify("9434765919", family="THOMAS", birth_date="2019-03-04")
    assert not pds.verify("9434765919", family="Thomas", birth_date="2019-03-05")  # someone else's number?


def test_an_unknown_number_is_none_and_an_invalid_one_is_refused_without_asking(pds: PdsClient) -> None:
    assert pds.get("9434765900") is None  # valid, but nobody holds it
    assert not pds.verify("9434765900")
    with pytest.raises(PdsError, match="not a valid NHS number"):
        pds.get("9434765918")


def test_a_death_and_a_restricted_record_are_reported(pds: PdsClient) -> None:
    died = pds.get("9434765935")
    assert died is not None
    assert died.deceased == "2026-02-01"
    hidden = pds.get("9434765943")
    assert hidden is not None
    assert hidden.restricted
    assert (hidden.postcode, hidden.gp) == (None, None)  # withheld for an S-flagged person


def test_a_trace_finds_the_one_person_described(pds: PdsClient) -> None:
    [found] = pds.trace(family="Thomas", given="Mia", birth_date="2019-03-04", gender="female")
    assert (found.nhs_number, found.score) == ("9434765919", 1.0)


def test_a_fuzzy_trace_allows_nicknames_and_slips_and_scores_them_lower(pds: PdsClient) -> None:
    [found] = pds.trace(family="Okonkow", given="Bob", birth_date="1950-07-01")
    assert found.nhs_number == "9434765935"
    assert found.score is not None
    assert found.score < 1.0
    assert pds.trace(family="Okonkow", given="Bob", birth_date="1950-07-01", fuzzy=False) == []


def test_a_trace_matching_more_people_than_allowed_returns_none(pds: PdsClient) -> None:
    """Twins share a family name and birth date: a trace on those alone must not pick one."""
    assert pds.trace(family="Thomas", birth_date="2019-03-04") == []
    both = pds.trace(family="Thomas", birth_date="2019-03-04", max_results=5)
    assert {t.nhs_number for t in both} == {"9434765919", "9434765927"}


def test_bad_traces_are_refused_with_pds_reason(pds: PdsClient) -> None:
    with pytest.raises(PdsError, match="max_results"):
        pds.trace(family="Thomas", birth_date="2019-03-04", max_results=51)
    with pytest.raises(PdsError, match="MISSING_VALUE"):
        pds.trace(family="", birth_date="2019-03-04")


def test_pds_out_of_reach_is_reported_as_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = PdsClient(BASE, http=httpx.Client(transport=httpx.MockTransport(refuse)))
    with pytest.raises(PdsUnavailable, match="could not be reached"):
        client.get("9434765919")
    failing = PdsClient(BASE, http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503))))
    with pytest.raises(PdsUnavailable, match="503"):
        failing.get("9434765919")


def test_the_node_serves_the_sandbox_of_a_synthetic_london_when_asked(tmp_path: Path, settings: Settings,
                                                                      store: Services) -> None:
    """`SHAREDCARE_PDS_SANDBOX_PEOPLE` (set by `sharedcare demo`) mounts the sandbox at /pds/FHIR/R4."""
    people = tmp_path / "people.csv"
    people.write_text("person_id,nhs_number,given,family,sex,birth_date,postcode,practice,died_on\n"
                      "p1,9434765919,Mia,Thomas,female,2019-03-04,E1 6AN,F84008,\n")
    app = create_app(settings.model_copy(update={"pds_sandbox_people": people}), store)
    with TestClient(app, base_url="http://node.test") as http:
        found = PdsClient("http://node.test/pds/FHIR/R4", http=http).get("9434765919")
    assert found is not None
    assert found.family == "Thomas"


def test_a_sandbox_without_its_people_file_stops_the_node_with_the_reason(tmp_path: Path, settings: Settings,
                                                                         store: Services) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        create_app(settings.model_copy(update={"pds_sandbox_people": tmp_path / "missing.csv"}), store)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigurationError, match=r"not a synthetic London people\.csv"):
        create_app(settings.model_copy(update={"pds_sandbox_people": wrong}), store)
