"""The CapabilityStatement and health endpoints."""

from __future__ import annotations

from fastapi.testclient import TestClient

from sharedcare.app import Services, create_app
from sharedcare.settings import Settings


def test_capability_statement_lists_every_r4_resource_type(client: TestClient) -> None:
    cs = client.get("/fhir/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in cs["rest"][0]["resource"]}
    assert len(types) == 146
    assert {"Patient", "Observation", "CarePlan", "AuditEvent"} <= types
    patient = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    names = {p["name"] for p in patient["searchParam"]}
    assert {"_id", "_lastUpdated", "identifier", "family", "birthdate", "_tag"} <= names
    assert "_content" not in names  # defined without an expression: not supported, so not claimed
    assert "Observation:subject" in patient["searchRevInclude"]
    assert "Patient:organization" in patient["searchInclude"]
    assert {"validate", "everything"} <= {o["name"] for o in patient["operation"]}
    assert {i["code"] for i in cs["rest"][0]["interaction"]} == {"transaction", "batch", "history-system"}


def test_capability_statement_in_xml(client: TestClient) -> None:
    r = client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 200
    assert b"<CapabilityStatement" in r.content


def test_health(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "pass"}
    assert client.get("/health/ready").json() == {"status": "pass"}


def test_unknown_paths_and_methods_get_operation_outcomes(client: TestClient) -> None:
    r = client.get("/fhir/Patient/1/unknown/thing")
    assert r.status_code == 405
    assert r.json()["resourceType"] == "OperationOutcome"


def test_a_known_url_with_a_method_it_does_not_take_is_405(client: TestClient) -> None:
    r = client.delete("/fhir/metadata")
    assert r.status_code == 405
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.put("/fhir/_history", json={}).status_code == 405
    assert client.get("/fhir").status_code == 405  # whole-system search is not offered


def test_the_base_url_takes_a_bundle_with_or_without_a_trailing_slash(client: TestClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": []}
    for url in ("/fhir", "/fhir/"):
        r = client.post(url, json=bundle, headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 200, url
        assert r.json()["type"] == "batch-response"


def test_literal_segments_win_over_ids(client: TestClient) -> None:
    assert client.get("/fhir/Patient/_history").json()["type"] == "history"


def test_the_app_warms_up_before_it_serves(store: Services, settings: Settings) -> None:
    """Start-up loads the definitions and builds the validator's and extractors' tables, so the first
    request does not pay for them."""
    from unittest import mock

    from sharedcare import app as app_module

    with mock.patch.object(app_module, "warm_up", wraps=app_module.warm_up) as warm, \
            TestClient(create_app(settings, store), base_url="http://testserver") as client:
        assert warm.call_count == 1
        assert client.get("/health/ready").json() == {"status": "pass"}


def test_start_up_freezes_its_heap_only_when_asked(store: Services, settings: Settings) -> None:
    """gc_freeze moves what start-up allocated out of the collector's full scans (a long-lived server);
    the tests' own settings turn it off."""
    from unittest import mock

    from sharedcare import app as app_module

    with mock.patch.object(app_module.gc, "freeze") as freeze, \
            TestClient(create_app(settings, store), base_url="http://testserver"):
        assert freeze.call_count == 0
    with mock.patch.object(app_module.gc, "freeze") as freeze, \
            TestClient(create_app(settings.model_copy(update={"gc_freeze": True}), store),
                       base_url="http://testserver"):
        assert freeze.call_count == 1


def test_shutting_down_waits_for_a_housekeeping_round_to_finish(store: Services, settings: Settings) -> None:
    """A housekeeping round runs in a worker thread holding a database connection. Shutting the
    server down finishes that round before it returns, so the engine is closed only after the
    connection has been given back (an abandoned round would leave it open, and would write to a store
    that is being closed)."""
    import threading
    import time
    from unittest import mock

    from sharedcare import app as app_module

    started, finished = threading.Event(), threading.Event()

    def slow_round(_svc: Services) -> None:
        started.set()
        time.sleep(0.5)
        finished.set()

    with mock.patch.object(app_module, "housekeep", slow_round):
        with TestClient(create_app(settings.model_copy(update={"housekeeping_seconds": 0.05}), store)):
            assert started.wait(10)
        assert finished.is_set()
