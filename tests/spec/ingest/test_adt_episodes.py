"""EpisodeOfCare from ADT (hl7v2/adt.py): an episode identifier in PV1-50 makes the source's episode of
care, which the encounter refers to and whose status follows the events. Through the inbox, on SQLite
and PostgreSQL; the mapping itself is pinned by the golden cases adt-a01-admission-episode and
adt-a03-discharge-episode."""

from __future__ import annotations

from typing import Any

import orjson

from sharedcare.access.context import system_caller
from sharedcare.app import Services
from sharedcare.fhir.search import query as search_query
from sharedcare.settings import Settings
from tests.spec.ingest import golden
from tests.spec.ingest.feeds import LOOPBACK, inbox, register, stored

EPISODE = "https://sharedcare.example/Id/hl7v2/RJ7/episode|RJ7S000000001"


def _message(case: str) -> bytes:
    return (golden.GOLDEN / case / "input.hl7").read_bytes()


def _cancel_discharge() -> bytes:
    """The episode's A03 cancelled: A13, a later event, no discharge time."""
    text = _message("adt-a03-discharge-episode").decode()
    text = (text.replace("ADT^A03^ADT_A03|RJ7000000102", "ADT^A13^ADT_A01|RJ7000000103")
            .replace("EVN|A03|20250905120000||||20250905120000", "EVN|A13|20250905130000||||20250905130000")
            .replace("|20250905114500|", "||"))
    return text.encode()


def _found(store: Services, res_type: str, *criteria: tuple[str, str]) -> list[dict[str, Any]]:
    q = search_query.parse(res_type, list(criteria), default_count=20, max_count=20)
    return [orjson.loads(s.data) for s in store.repo.search(system_caller(), q, "").items if s.data]


def _process(store: Services, settings: Settings, *messages: bytes) -> None:
    box = inbox(store, settings)
    for payload in messages:
        box.receive_hl7(payload, LOOPBACK)
    box.drain()
    assert {m.status for m in stored(store)} == {"done"}


def test_an_admission_carrying_an_episode_id_makes_the_sources_episode_of_care(store: Services,
                                                                               settings: Settings) -> None:
    register(store)
    _process(store, settings, _message("adt-a01-admission-episode"))
    [episode] = _found(store, "EpisodeOfCare", ("identifier", EPISODE))
    [patient] = _found(store, "Patient")
    assert episode["status"] == "active"
    assert episode["patient"]["reference"] == f"Patient/{patient['id']}"
    assert episode["managingOrganization"]["identifier"]["value"] == "RJ7"
    assert episode["meta"]["source"] == "urn:ods:RJ7"
    [encounter] = _found(store, "Encounter", ("episode-of-care", f"EpisodeOfCare/{episode['id']}"))
    assert encounter["status"] == "in-progress"


def test_a_discharge_finishes_the_episode(store: Services, settings: Settings) -> None:
    register(store)
    _process(store, settings, _message("adt-a01-admission-episode"), _message("adt-a03-discharge-episode"))
    [episode] = _found(store, "EpisodeOfCare")
    assert episode["status"] == "finished"
    assert episode["period"] == {"start": "2025-09-01T09:30:00+01:00", "end": "2025-09-05T11:45:00+01:00"}
    [encounter] = _found(store, "Encounter")
    assert encounter["episodeOfCare"] == [{"reference": f"EpisodeOfCare/{episode['id']}"}]


def test_cancelling_the_discharge_makes_the_episode_active_again(store: Services, settings: Settings) -> None:
    register(store)
    _process(store, settings, _message("adt-a01-admission-episode"), _message("adt-a03-discharge-episode"),
             _cancel_discharge())
    [episode] = _found(store, "EpisodeOfCare")
    assert episode["status"] == "active"
    assert "end" not in episode["period"]


def test_an_admission_arriving_after_the_discharge_never_reopens_the_episode(store: Services,
                                                                            settings: Settings) -> None:
    register(store)
    _process(store, settings, _message("adt-a03-discharge-episode"))
    _process(store, settings, _message("adt-a01-admission-episode"))  # recorded before the discharge
    [episode] = _found(store, "EpisodeOfCare")
    assert episode["status"] == "finished"


def test_without_an_episode_id_no_episode_of_care_is_written() -> None:
    for case in ("adt-a01-admission", "adt-a03-discharge", "adt-a11-cancel-admit"):
        got = golden.mapped_json(golden.GOLDEN / case)
        assert "EpisodeOfCare" not in {e["resource"]["resourceType"] for e in got["bundle"]["entry"]}
        assert all("episodeOfCare" not in e["resource"] for e in got["bundle"]["entry"])
