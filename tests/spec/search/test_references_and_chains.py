"""Reference parameters, chaining (up to three links) and reverse chaining (`_has`)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.spec.search.helpers import bundle, error, ids, make, observation, ordered, patient


def test_reference_forms(client: TestClient) -> None:
    p = make(client, patient("R"))
    other = make(client, patient("S"))
    obs = make(client, observation(p), "Observation")
    make(client, observation(other), "Observation")
    assert ids(client, f"Observation?subject=Patient/{p}") == {obs}
    assert ids(client, f"Observation?subject={p}") == {obs}
    assert ids(client, f"Observation?subject:Patient={p}") == {obs}
    assert ids(client, f"Observation?subject:Group={p}") == set()
    assert ids(client, f"Observation?patient=http://testserver/fhir/Patient/{p}") == {obs}
    assert ids(client, f"Observation?subject=Patient/{p}/_history/1") == {obs}
    assert "does not refer" in error(client, f"Observation?subject:Organization={p}")


def test_reference_by_identifier_and_absolute_urls_elsewhere(client: TestClient) -> None:
    nhs = "https://fhir.nhs.uk/Id/nhs-number"
    logical = make(client, {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                            "subject": {"identifier": {"system": nhs, "value": "9434765919"}}})
    remote = make(client, {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                           "subject": {"reference": "https://other.example/fhir/Patient/77"}})
    assert ids(client, f"Observation?subject:identifier={nhs}|9434765919") == {logical}
    assert ids(client, "Observation?subject=https://other.example/fhir/Patient/77") == {remote}
    assert ids(client, "Observation?subject=Patient/77") == set()  # not this server's Patient/77


def test_chains_follow_references_to_resources_that_match(client: TestClient) -> None:
    org = make(client, {"resourceType": "Organization", "name": "Guy's and St Thomas'"})
    ann = make(client, patient("Ann", managingOrganization={"reference": f"Organization/{org}"}))
    bob = make(client, patient("Bob"))
    a_obs = make(client, observation(ann), "Observation")
    make(client, observation(bob), "Observation")
    assert ids(client, "Observation?subject:Patient.family=ann") == {a_obs}
    assert ids(client, "Observation?patient.family=ann") == {a_obs}
    assert ids(client, "Observation?subject:Patient.organization.name=guy") == {a_obs}  # two links
    assert ids(client, "Observation?subject:Patient.organization:Organization.name=nobody") == set()
    assert ids(client, "Observation?subject.family=bo") != ids(client, "Observation?subject.family=ann")


def test_chains_are_limited_and_must_go_through_references(client: TestClient) -> None:
    assert "chain" in error(client, "Observation?status.code=final")
    deep = "Observation?subject:Patient.organization.partof.partof.name=x"
    assert "limited" in error(client, deep)


def test_reverse_chaining_with_has(client: TestClient) -> None:
    ann = make(client, patient("Ann"))
    bob = make(client, patient("Bob"))
    make(client, observation(ann, "8480-6"), "Observation")
    make(client, observation(bob, "2339-0"), "Observation")
    assert ids(client, "Patient?_has:Observation:patient:code=8480-6") == {ann}
    assert ids(client, "Patient?_has:Observation:subject:code=2339-0") == {bob}
    assert ids(client, "Patient?_has:Observation:patient:code=0000-0") == set()
    assert "reference" in error(client, "Patient?_has:Observation:status:code=1")


def test_chained_targets_that_are_deleted_do_not_match(client: TestClient) -> None:
    ann = make(client, patient("Ann"))
    obs = make(client, observation(ann), "Observation")
    assert ids(client, "Observation?subject:Patient.family=ann") == {obs}
    assert client.delete(f"/fhir/Patient/{ann}").status_code == 204
    assert ids(client, "Observation?subject:Patient.family=ann") == set()
    assert ids(client, "Observation?subject:Patient.family:missing=true") == set()


@pytest.mark.parametrize("drive_cap", [1000, 1])
def test_a_chain_with_other_criteria_pages_in_order(client: TestClient, drive_cap: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain naming few targets drives the search from their references (drive_cap 1000); naming
    more than the cap, it is tested on each resource instead (drive_cap 1). Same answers either way."""
    from sharedcare.storage import search

    monkeypatch.setattr(search, "CHAIN_DRIVE_CAP", drive_cap)
    twins = [make(client, patient("Chainfam", given)) for given in ("A", "B")]
    other = make(client, patient("Otherfam"))
    wanted = []
    for _ in range(3):
        for p in twins:
            wanted.append(make(client, observation(p, "2339-0"), "Observation"))
            make(client, observation(p, "8480-6"), "Observation")
        make(client, observation(other, "2339-0"), "Observation")
    query = "Observation?subject:Patient.family=chainfam&code=2339-0"
    assert ordered(client, query + "&_count=2") == wanted  # creation order across both patients' pages
    assert bundle(client, query + "&_total=accurate")["total"] == 6
    assert ids(client, "Observation?subject:Patient.family=chainfam&code=8480-6&_count=1") == set(ids(
        client, "Observation?subject:Patient.family=chainfam")) - set(wanted)
