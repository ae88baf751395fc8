"""FHIR feeds through the inbox: a source's transaction Bundles and NDJSON, stored once per key,
written as the source, a batch's entries standing alone, and a resource that fails validation kept as
a dead letter that names what is wrong."""

from __future__ import annotations

import json
from typing import Any

from sharedcare.access.context import system_caller
from sharedcare.app import Services
from sharedcare.fhir.search import query as search_query
from sharedcare.ingest import fhir_feed, sources
from sharedcare.settings import Settings
from sharedcare.storage.inbox_store import Source
from sharedcare.storage.repository import SOURCE_PREFIX
from tests.spec.ingest.feeds import inbox, stored


def _patient(mrn: str, family: str = "Ashe", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": "https://example.org/gp", "value": mrn}],
            "name": [{"family": family}], **extra}


def _transaction(bundle_id: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": bundle_id, "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"Patient?identifier=https://example.org/gp|"
                                                           f"{r['identifier'][0]['value']}"}} for r in resources]}


def _register(store: Services) -> Source:
    return sources.register(store.engine, Source("E85001", "E85001", "Practice", ("fhir",)))


def _patients(store: Services) -> list[dict[str, Any]]:
    q = search_query.parse("Patient", [], default_count=50, max_count=50)
    return [json.loads(s.data) for s in store.repo.search(system_caller(), q, "").items]


def test_a_sources_bundles_are_stored_once_each_and_written_as_the_source(store: Services,
                                                                          settings: Settings) -> None:
    _register(store)
    box = inbox(store, settings)
    data = "\n".join(json.dumps(_transaction(f"b{i}", _patient(f"G{i}"))) for i in range(3)).encode()
    first = fhir_feed.split("E85001", data, "E85001.ndjson")
    assert first.problems == []
    assert [i.message_key for i in first.items] == ["Bundle/b0", "Bundle/b1", "Bundle/b2"]
    box.receive_items(first.items)
    again = box.receive_items(fhir_feed.split("E85001", data, "E85001.ndjson").items)
    assert [r.duplicate for r in again] == [True, True, True]
    box.drain()
    assert [m.status for m in stored(store)] == ["done"] * 3
    found = _patients(store)
    assert len(found) == 3
    assert {p["meta"]["source"] for p in found} == {SOURCE_PREFIX + "E85001"}


def test_a_batch_entry_that_fails_is_a_dead_letter_while_the_others_are_written(store: Services,
                                                                                 settings: Settings) -> None:
    _register(store)
    box = inbox(store, settings)
    batch = {"resourceType": "Bundle", "id": "batch-1", "type": "batch", "entry": [
        {"resource": _patient("B1"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": _patient("B2", gender="sometimes"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": _patient("B3"), "request": {"method": "POST", "url": "Patient"}}]}
    split = fhir_feed.split("E85001", json.dumps(batch).encode(), "batch.json")
    assert [i.message_key for i in split.items] == ["Bundle/batch-1#0", "Bundle/batch-1#1", "Bundle/batch-1#2"]
    box.receive_items(split.items)
    box.drain()
    by_key = {m.message_key: m for m in stored(store)}
    assert by_key["Bundle/batch-1#0"].status == by_key["Bundle/batch-1#2"].status == "done"
    dead = by_key["Bundle/batch-1#1"]
    assert dead.status == "dead"
    assert dead.error is not None
    assert "gender" in dead.error
    assert "sometimes" not in dead.error  # the reason names the path, never the value
    assert len(_patients(store)) == 2


def test_ndjson_resources_are_created_or_updated_by_their_id(store: Services, settings: Settings) -> None:
    _register(store)
    box = inbox(store, settings)
    data = (json.dumps(_patient("N1")) + "\n\n" + json.dumps(_patient("N2") | {"id": "gp-n2"}) + "\n").encode()
    split = fhir_feed.split("E85001", data, "resources.ndjson")
    assert len(split.items) == 2
    box.receive_items(split.items)
    box.drain()
    ids = {p["id"] for p in _patients(store)}
    assert "gp-n2" in ids
    assert len(ids) == 2


def test_what_is_not_a_fhir_message_is_reported_and_not_stored() -> None:
    bad = b'{"resourceType":"Bundle","type":"searchset"}\nnot json\n[1, 2]\n'
    split = fhir_feed.split("E85001", bad, "bad.ndjson")
    assert split.items == []
    assert [p.split(": ", 1)[1] for p in split.problems] == [
        "a Bundle must be a transaction or a batch", "not JSON", "not a FHIR resource"]
