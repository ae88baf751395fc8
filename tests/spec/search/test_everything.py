"""Patient/$everything: the patient's compartment and the shared resources it references, never
anything of another patient; `_type`, `_since` and `_count` paging."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.spec.search.helpers import bundle, error, make, observation, ordered, patient


def _record(client: TestClient) -> dict[str, str]:
    org = make(client, {"resourceType": "Organization", "name": "Practice"})
    gp = make(client, {"resourceType": "Practitioner", "name": [{"family": "Who"}]})
    ann = make(client, patient("Ann", generalPractitioner=[{"reference": f"Practitioner/{gp}"}]))
    bob = make(client, patient("Bob"))
    ann_obs = make(client, observation(ann, performer=[{"reference": f"Organization/{org}"}]), "Observation")
    bob_obs = make(client, observation(bob), "Observation")
    # Ann's record names Bob (a shared observation of both), but Bob's own Patient resource and his
    # other records are his, not hers.
    both = make(client, observation(ann, focus=[{"reference": f"Patient/{bob}"}],
                                    performer=[{"reference": f"Patient/{bob}"}]), "Observation")
    make(client, {"resourceType": "Organization", "name": "Unrelated"})
    return {"org": org, "gp": gp, "ann": ann, "bob": bob, "ann_obs": ann_obs, "bob_obs": bob_obs, "both": both}


def test_everything_is_the_compartment_and_what_it_references(client: TestClient) -> None:
    ids = _record(client)
    got = set(ordered(client, f"Patient/{ids['ann']}/$everything"))
    assert got == {ids["ann"], ids["ann_obs"], ids["both"], ids["org"], ids["gp"]}
    assert ids["bob"] not in got
    assert ids["bob_obs"] not in got


def test_everything_type_since_and_paging(client: TestClient) -> None:
    ids = _record(client)
    assert set(ordered(client, f"Patient/{ids['ann']}/$everything?_type=Observation")) == {ids["ann_obs"], ids["both"]}
    assert set(ordered(client, f"Patient/{ids['ann']}/$everything?_count=2")) == \
        set(ordered(client, f"Patient/{ids['ann']}/$everything"))
    first = bundle(client, f"Patient/{ids['ann']}/$everything?_count=2")
    assert first["total"] == 5
    assert len(first["entry"]) == 2
    assert ordered(client, f"Patient/{ids['ann']}/$everything?_since=2999-01-01") == []
    assert "_type" in error(client, f"Patient/{ids['ann']}/$everything?_type=Unicorn")


def test_everything_for_an_unknown_patient_is_404(client: TestClient) -> None:
    assert error(client, "Patient/nobody/$everything", 404)
