"""`$import`: a registered source's bulk load of NDJSON over FHIR, in the asynchronous request pattern.

The file is committed to the inbox before the 202; the status URL answers 202 while parts wait and
then a manifest of what was written by type; a line that cannot be written is kept as a dead letter
of its own and listed under the manifest's errors, while the rest of the file is written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sharedcare.access.context import Caller, system_caller
from sharedcare.app import Services, create_app
from sharedcare.fhir.search import query as search_query
from sharedcare.ingest import bulk_import, sources
from sharedcare.settings import Settings
from sharedcare.storage import inbox_store
from sharedcare.storage.inbox_store import Source
from sharedcare.storage.repository import SOURCE_PREFIX
from tests.conftest import NODE_CLIENT, token_for
from tests.spec.ingest.feeds import inbox

NDJSON = {"Content-Type": "application/fhir+ndjson"}
GP = Caller(kind="system", agent_id="client:gp-system", scopes=("system/*.cruds",), client_id="gp-system")
OTHER = Caller(kind="system", agent_id="client:other-gp", scopes=("system/*.cruds",), client_id="other-gp")


def _register(store: Services, source_id: str = "E85001", client_id: str = "gp-system", **extra: Any) -> Source:
    return sources.register(store.engine, Source(source_id, source_id, f"Practice {source_id}", ("fhir",),
                                                 client_id=client_id, **extra))


@pytest.fixture
def app_client(store: Services, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store), base_url="http://testserver") as c:
        yield c


def _as(store: Services, settings: Settings, caller: Caller) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(store, settings, caller)}"}


def _ndjson(*docs: dict[str, Any] | str) -> bytes:
    return b"".join((d if isinstance(d, str) else json.dumps(d)).encode() + b"\n" for d in docs)


def _patient(res_id: str | None = None, family: str = "Ashe", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}], **extra}
    if res_id is not None:
        doc["id"] = res_id
    return doc


def _count(store: Services, res_type: str) -> int:
    q = search_query.parse(res_type, [("_summary", "count")], default_count=10, max_count=10)
    return store.repo.search(system_caller(), q, "").total or 0


def _status_path(response: Any) -> str:
    location = response.headers["content-location"]
    return location[location.index("/fhir/"):]


def test_an_ndjson_import_is_accepted_then_written_as_its_source_and_reported(
        store: Services, settings: Settings, app_client: TestClient) -> None:
    _register(store)
    headers = _as(store, settings, GP)
    body = _ndjson(_patient("gp-1"), _patient(family="Brook"),
                   '{"resourceType": "Observation", "id": "obs-1", "status": "final", "code": {"coding": '
                   '[{"system": "http://loinc.org", "code": "8867-4"}]}, "subject": {"reference": "Patient/gp-1"}, '
                   '"valueQuantity": {"value": 72.50, "unit": "/min"}}')
    got = app_client.post("/fhir/$import", content=body, headers={**headers, **NDJSON})
    assert got.status_code == 202, got.text
    assert got.json()["issue"][0]["diagnostics"] == "accepted: 3 lines in 1 parts"
    status = _status_path(got)
    waiting = app_client.get(status, headers=headers)
    assert waiting.status_code == 202
    assert waiting.headers["x-progress"] == "0 of 1 parts written"

    inbox(store, settings).drain()

    done = app_client.get(status, headers=headers)
    assert done.status_code == 200
    manifest = done.json()
    assert manifest["output"] == [{"type": "Observation", "count": 1}, {"type": "Patient", "count": 2}]
    assert manifest["error"] == []
    assert manifest["requiresAccessToken"] is True
    patient = json.loads(store.repo.read(system_caller(), "Patient", "gp-1").data)
    assert patient["meta"]["source"] == SOURCE_PREFIX + "E85001"
    observation = store.repo.read(system_caller(), "Observation", "obs-1").data
    assert b"72.50" in observation  # the decimal as sent
    provenance = store.repo.search(system_caller(), search_query.parse(
        "Provenance", [], default_count=5, max_count=5), "").items
    assert len(provenance) == 1
    targets = {t["reference"] for t in json.loads(provenance[0].data)["target"]}
    assert {"Patient/gp-1", "Observation/obs-1"} <= targets
    assert len(targets) == 3


def test_a_line_that_cannot_be_written_is_a_dead_letter_while_the_rest_are_written(
        store: Services, settings: Settings, app_client: TestClient) -> None:
    _register(store)
    headers = _as(store, settings, GP)
    body = _ndjson(_patient("ok-1"), "this is not json", _patient("bad-1", gender="nonsense"),
                   {"resourceType": "AuditEvent", "id": "a1"}, _patient("ok-2"))
    got = app_client.post("/fhir/$import", content=body, headers={**headers, **NDJSON})
    inbox(store, settings).drain()
    manifest = app_client.get(_status_path(got), headers=headers).json()
    assert manifest["output"] == [{"type": "Patient", "count": 2}]
    assert manifest["error"][0]["count"] == 3
    errors = app_client.get(manifest["error"][0]["url"].split("testserver")[-1], headers=headers)
    assert errors.headers["content-type"].startswith("application/fhir+ndjson")
    outcomes = [json.loads(line) for line in errors.text.splitlines()]
    said = [o["issue"][0]["diagnostics"] for o in outcomes]
    assert said[0].startswith("line 2: not JSON")
    assert said[1].startswith("line 3: 400")
    assert said[2].startswith("line 4:")
    assert all("nonsense" not in s for s in said)  # our words, never the record's content
    dead = inbox_store.messages(store.engine, status=inbox_store.DEAD)
    assert len(dead) == 3
    assert {m.kind for m in dead} == {"fhir"}
    assert _count(store, "Patient") == 2


def test_the_same_file_sent_twice_is_one_job_stored_once(store: Services, settings: Settings,
                                                          app_client: TestClient) -> None:
    _register(store)
    headers = {**_as(store, settings, GP), **NDJSON}
    body = _ndjson(*[_patient(f"p{i}") for i in range(5)])
    first = app_client.post("/fhir/$import", content=body, headers=headers)
    second = app_client.post("/fhir/$import", content=body, headers=headers)
    assert first.headers["content-location"] == second.headers["content-location"]
    assert len(inbox_store.messages(store.engine)) == 1
    inbox(store, settings).drain()
    assert store.repo.read(system_caller(), "Patient", "p3").version_id == 1


def test_a_large_file_is_written_in_parts_and_a_repeated_id_becomes_a_new_version(
        store: Services, settings: Settings, app_client: TestClient) -> None:
    _register(store)
    headers = _as(store, settings, GP)
    lines = [_patient(f"big-{i}") for i in range(2 * bulk_import.CHUNK_LINES + 10)]
    lines.append(_patient("big-3", family="Corrected"))  # the same id again, later in the file
    got = app_client.post("/fhir/$import", content=_ndjson(*lines), headers={**headers, **NDJSON})
    assert got.json()["issue"][0]["diagnostics"].endswith("in 3 parts")
    inbox(store, settings).drain()
    manifest = app_client.get(_status_path(got), headers=headers).json()
    assert manifest["output"] == [{"type": "Patient", "count": len(lines)}]
    assert _count(store, "Patient") == len(lines) - 1
    corrected = store.repo.read(system_caller(), "Patient", "big-3")
    assert corrected.version_id == 2
    assert b"Corrected" in corrected.data


def test_only_a_registered_sources_own_client_may_import(store: Services, settings: Settings,
                                                         app_client: TestClient) -> None:
    _register(store)
    body = _ndjson(_patient("x1"))
    node = app_client.post("/fhir/$import", content=body, headers={**_as(store, settings, NODE_CLIENT), **NDJSON})
    assert node.status_code == 403
    assert node.json()["resourceType"] == "OperationOutcome"
    assert app_client.post("/fhir/$import", content=body, headers=NDJSON).status_code == 401
    inbox_store.change_source(store.engine, "E85001", status="disabled")
    disabled = app_client.post("/fhir/$import", content=body, headers={**_as(store, settings, GP), **NDJSON})
    assert disabled.status_code == 403
    assert inbox_store.messages(store.engine) == []


def test_an_import_may_hold_only_types_the_token_may_create_and_update(store: Services, settings: Settings,
                                                                      app_client: TestClient) -> None:
    _register(store)
    narrow = Caller(kind="system", agent_id="client:gp-system", scopes=("system/Patient.cru",), client_id="gp-system")
    body = _ndjson(_patient("x1"), {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"}})
    got = app_client.post("/fhir/$import", content=body, headers={**_as(store, settings, narrow), **NDJSON})
    assert got.status_code == 403
    assert "Observation" in got.json()["issue"][0]["diagnostics"]
    assert inbox_store.messages(store.engine) == []


def test_an_import_never_changes_another_sources_record(store: Services, settings: Settings,
                                                        app_client: TestClient) -> None:
    _register(store)
    _register(store, "F84001", client_id="other-gp")
    app_client.post("/fhir/$import", content=_ndjson(_patient("shared-id")),
                    headers={**_as(store, settings, GP), **NDJSON})
    inbox(store, settings).drain()
    headers = _as(store, settings, OTHER)
    got = app_client.post("/fhir/$import", content=_ndjson(_patient("shared-id", family="Impostor")),
                          headers={**headers, **NDJSON})
    inbox(store, settings).drain()
    manifest = app_client.get(_status_path(got), headers=headers).json()
    assert manifest["output"] == []
    assert manifest["error"][0]["count"] == 1
    assert store.repo.read(system_caller(), "Patient", "shared-id").version_id == 1
    dead = inbox_store.messages(store.engine, status=inbox_store.DEAD)
    assert "another source" in (dead[0].error or "")


def test_another_client_cannot_see_an_import(store: Services, settings: Settings, app_client: TestClient) -> None:
    _register(store)
    _register(store, "F84001", client_id="other-gp")
    got = app_client.post("/fhir/$import", content=_ndjson(_patient("x1")),
                          headers={**_as(store, settings, GP), **NDJSON})
    status = _status_path(got)
    assert app_client.get(status, headers=_as(store, settings, OTHER)).status_code == 404
    assert app_client.get(status + "/errors", headers=_as(store, settings, NODE_CLIENT)).status_code == 404
    assert app_client.get("/fhir/$import-poll-status/" + "0" * 40,
                          headers=_as(store, settings, GP)).status_code == 404


@pytest.mark.parametrize(("content_type", "body", "status", "said"), [
    ("application/fhir+ndjson", b"hello\nworld\n", 400, "no FHIR resource"),
    ("application/fhir+ndjson", b"", 400, "no body"),
    ("application/fhir+json", b'{"resourceType": "Parameters"}', 400, "NDJSON itself"),
    ("text/csv", b"a,b\n", 415, "NDJSON"),
])
def test_a_body_that_is_not_ndjson_is_refused_and_nothing_is_stored(
        store: Services, settings: Settings, app_client: TestClient, content_type: str, body: bytes, status: int,
        said: str) -> None:
    _register(store)
    got = app_client.post("/fhir/$import", content=body,
                          headers={**_as(store, settings, GP), "Content-Type": content_type})
    assert got.status_code == status
    assert said in got.json()["issue"][0]["diagnostics"]
    assert inbox_store.messages(store.engine) == []


def test_the_servers_own_inbox_worker_writes_an_import_without_anyone_draining(store: Services,
                                                                               settings: Settings) -> None:
    import time

    _register(store)
    served = settings.model_copy(update={"inbox_worker": True})
    headers = {"Authorization": f"Bearer {token_for(store, served, GP)}"}
    with TestClient(create_app(served, store), base_url="http://testserver") as c:
        got = c.post("/fhir/$import", content=_ndjson(_patient("served-1")), headers={**headers, **NDJSON})
        deadline = time.monotonic() + 15
        while (poll := c.get(_status_path(got), headers=headers)).status_code == 202 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert poll.status_code == 200
        assert poll.json()["output"] == [{"type": "Patient", "count": 1}]


def test_an_imports_local_codes_are_translated_by_the_sources_concept_maps(
        store: Services, settings: Settings, app_client: TestClient) -> None:
    from sharedcare.ingest import concept_maps

    local = "https://example.org/gp/codes"
    source = _register(store, code_systems=(local,))
    concept_maps.add(store.repo, source, {
        "resourceType": "ConceptMap", "url": "https://example.org/gp/maps/tests", "version": "1", "status": "active",
        "group": [{"source": local, "target": "http://loinc.org",
                   "element": [{"code": "GLU", "target": [{"code": "14749-6", "equivalence": "equivalent"}]}]}]})
    headers = _as(store, settings, GP)
    line = {"resourceType": "Observation", "id": "glu-1", "status": "final",
            "code": {"coding": [{"system": local, "code": "GLU", "display": "Glucose"}]}}
    app_client.post("/fhir/$import", content=_ndjson(line), headers={**headers, **NDJSON})
    inbox(store, settings).drain()
    codings = json.loads(store.repo.read(system_caller(), "Observation", "glu-1").data)["code"]["coding"]
    assert codings[0] == {"system": local, "code": "GLU", "display": "Glucose"}  # the original, first and unchanged
    assert [(c["system"], c["code"]) for c in codings[1:]] == [("http://loinc.org", "14749-6")]


def test_a_byte_order_mark_and_crlf_line_ends_are_read_as_ndjson(store: Services, settings: Settings,
                                                                  app_client: TestClient) -> None:
    _register(store)
    headers = _as(store, settings, GP)
    body = b"\xef\xbb\xbf" + _ndjson(_patient("bom-1")).replace(b"\n", b"\r\n") + _ndjson(_patient("bom-2"))
    got = app_client.post("/fhir/$import", content=body, headers={**headers, **NDJSON})
    inbox(store, settings).drain()
    manifest = app_client.get(_status_path(got), headers=headers).json()
    assert manifest["output"] == [{"type": "Patient", "count": 2}]
    assert manifest["error"] == []


def test_a_line_naming_no_fhir_type_is_its_own_dead_letter_not_a_refusal_of_the_file(
        store: Services, settings: Settings, app_client: TestClient) -> None:
    _register(store)
    narrow = Caller(kind="system", agent_id="client:gp-system", scopes=("system/Patient.cru",), client_id="gp-system")
    headers = _as(store, settings, narrow)
    got = app_client.post("/fhir/$import", content=_ndjson(_patient("t1"), {"resourceType": "NoSuchType"}),
                          headers={**headers, **NDJSON})
    assert got.status_code == 202
    inbox(store, settings).drain()
    manifest = app_client.get(_status_path(got), headers=headers).json()
    assert manifest["output"] == [{"type": "Patient", "count": 1}]
    assert manifest["error"][0]["count"] == 1


def test_a_gzip_compressed_body_is_imported_and_a_broken_one_refused(store: Services, settings: Settings,
                                                                    app_client: TestClient) -> None:
    import gzip

    _register(store)
    headers = {**_as(store, settings, GP), **NDJSON, "Content-Encoding": "gzip"}
    got = app_client.post("/fhir/$import", content=gzip.compress(_ndjson(_patient("gz-1"))), headers=headers)
    assert got.status_code == 202
    inbox(store, settings).drain()
    assert store.repo.read(system_caller(), "Patient", "gz-1").version_id == 1
    broken = app_client.post("/fhir/$import", content=b"not gzip at all", headers=headers)
    assert broken.status_code == 400
    assert "gzip" in broken.json()["issue"][0]["diagnostics"]
    other = app_client.post("/fhir/$import", content=b"x", headers={**headers, "Content-Encoding": "br"})
    assert other.status_code == 415
