"""A source's transaction Bundle pushed over the FHIR API (`POST /fhir` by its own system client): written
as the API writes it, and kept in the inbox in the same transaction, so the same Bundle pushed again is
not applied again and gets the answer it got the first time, with one Provenance per message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sharedcare.access.context import Caller, system_caller
from sharedcare.app import Services, create_app
from sharedcare.fhir.search import query as search_query
from sharedcare.ingest import sources
from sharedcare.settings import Settings
from sharedcare.storage import inbox_store
from sharedcare.storage.inbox_store import Source
from sharedcare.storage.repository import SOURCE_PREFIX
from tests.conftest import NODE_CLIENT, token_for

FHIR = {"Content-Type": "application/fhir+json"}
GP = Caller(kind="system", agent_id="client:gp-system", scopes=("system/*.cruds",), client_id="gp-system",
            organisation="E85001")
NARROW = Caller(kind="system", agent_id="client:gp-system", scopes=("system/Patient.cruds",), client_id="gp-system",
                organisation="E85001")


@pytest.fixture
def app_client(store: Services, settings: Settings) -> Iterator[TestClient]:
    sources.register(store.engine, Source("E85001", "E85001", "Practice", ("fhir",), client_id="gp-system"))
    with TestClient(create_app(settings, store), base_url="http://testserver") as c:
        yield c


def _as(store: Services, settings: Settings, caller: Caller) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(store, settings, caller)}", **FHIR}


def _bundle(family: str = "Ashe", value: str = "msg-1", *extra: dict[str, Any]) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "identifier": [{"system": "https://example.org/gp", "value": "G1"}],
               "name": [{"family": family}]}
    return {"resourceType": "Bundle", "type": "transaction",
            "identifier": {"system": "https://example.org/gp/messages", "value": value},
            "entry": [{"resource": patient, "request": {"method": "PUT",
                                                        "url": "Patient?identifier=https://example.org/gp|G1"}},
                      *extra]}


def _found(store: Services, res_type: str) -> list[dict[str, Any]]:
    q = search_query.parse(res_type, [], default_count=20, max_count=20)
    return [json.loads(s.data) for s in store.repo.search(system_caller(), q, "").items if s.data]


def test_a_pushed_transaction_is_applied_once_however_often_it_is_pushed(
        store: Services, settings: Settings, app_client: TestClient) -> None:
    headers = _as(store, settings, GP)
    first = app_client.post("/fhir", json=_bundle(), headers=headers)
    assert first.status_code == 200, first.text
    again = app_client.post("/fhir", json=_bundle(), headers=headers)
    assert again.status_code == 200
    assert again.json() == first.json()  # the answer it got the first time
    [patient] = _found(store, "Patient")
    assert patient["meta"]["versionId"] == "1"
    assert patient["meta"]["source"] == SOURCE_PREFIX + "E85001"
    [row] = inbox_store.messages(store.engine)
    assert (row.source_id, row.message_key, row.kind, row.status) == (
        "E85001", "https://example.org/gp/messages|msg-1", "fhir", inbox_store.DONE)
    [provenance] = _found(store, "Provenance")
    assert [t["reference"] for t in provenance["target"]] == [f"Patient/{patient['id']}"]


def test_an_identifier_used_before_for_a_different_bundle_is_refused_and_changes_nothing(
        store: Services, settings: Settings, app_client: TestClient) -> None:
    headers = _as(store, settings, GP)
    assert app_client.post("/fhir", json=_bundle(), headers=headers).status_code == 200
    reused = app_client.post("/fhir", json=_bundle(family="Other"), headers=headers)
    assert reused.status_code == 409
    assert reused.json()["resourceType"] == "OperationOutcome"
    [patient] = _found(store, "Patient")
    assert patient["name"][0]["family"] == "Ashe"
    assert len(inbox_store.messages(store.engine)) == 1


def test_the_clients_scopes_still_decide_what_it_may_write_and_the_provenance_needs_none(
        store: Services, settings: Settings, app_client: TestClient) -> None:
    headers = _as(store, settings, NARROW)
    assert app_client.post("/fhir", json=_bundle(), headers=headers).status_code == 200
    assert len(_found(store, "Provenance")) == 1  # written by the source's system, beside the client's writes
    observation = {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"}},
                   "request": {"method": "POST", "url": "Observation"}}
    refused = app_client.post("/fhir", json=_bundle("Ashe", "msg-2", observation), headers=headers)
    assert refused.status_code == 403
    assert _found(store, "Observation") == []
    assert len(inbox_store.messages(store.engine)) == 1  # the refused message was not kept as done


def test_a_client_that_is_no_sources_writes_as_the_rest_api_always_has(
        store: Services, settings: Settings, app_client: TestClient) -> None:
    headers = _as(store, settings, NODE_CLIENT)
    assert app_client.post("/fhir", json=_bundle(), headers=headers).status_code == 200
    assert app_client.post("/fhir", json=_bundle(), headers=headers).status_code == 200
    assert inbox_store.messages(store.engine) == []
    assert _found(store, "Provenance") == []
