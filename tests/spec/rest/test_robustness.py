"""Hostile and random input never causes a 5xx or kills the process (IV3, IV4 in the security cases)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.spec.rest.helpers import FHIR_JSON, create, patient

NOISE = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
PARAMS = st.sampled_from(["_id", "_lastUpdated", "identifier", "_count", "_total", "_summary", "_cursor",
                          "identifier:not", "_id:exact", "name", "subject:Patient.name", "_has:Observation:x:y",
                          "_sort", "'; DROP TABLE resource;--", "$where", "_format"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(PARAMS, NOISE), max_size=5))
def test_search_never_fails_with_a_server_error(client: TestClient, params: list[tuple[str, str]]) -> None:
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params)
    r = client.get(f"/fhir/Patient?{query}")
    assert r.status_code < 500
    assert r.json()["resourceType"] in ("Bundle", "OperationOutcome")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers()
                    | st.floats(allow_nan=False, allow_infinity=False) | NOISE,
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(NOISE, kids, max_size=3),
                    max_leaves=20))
def test_random_bodies_are_refused_cleanly(client: TestClient, body: object) -> None:
    doc = {"resourceType": "Patient", "name": body} if not isinstance(body, dict) else {"resourceType": "Patient",
                                                                                         **body}
    r = client.post("/fhir/Patient", json=doc, headers={"Content-Type": FHIR_JSON})
    assert r.status_code in (201, 400, 422)


def test_sql_metacharacters_in_ids_and_tokens_are_just_data(client: TestClient) -> None:
    create(client, patient())
    assert client.get("/fhir/Patient/x'%20OR%20'1'='1").status_code in (400, 404)
    r = client.get("/fhir/Patient?identifier=' OR 1=1 --")
    assert r.status_code == 200
    assert r.json()["total"] == 0


def test_a_thousand_or_values_and_huge_counts(client: TestClient) -> None:
    ids = ",".join(f"id{i}" for i in range(1000))
    assert client.get(f"/fhir/Patient?_id={ids}").status_code == 200
    assert client.get("/fhir/Patient?_count=1000000").status_code == 200


def test_bundles_with_too_many_entries_are_413(client: TestClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"request": {"method": "GET", "url": "Patient/x"}}] * 10001}
    r = client.post("/fhir", json=bundle, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 413


def test_nul_characters_are_refused_not_a_server_error(client: TestClient) -> None:
    """PostgreSQL text cannot hold U+0000, and no FHIR value needs it: refused with 400 everywhere."""
    for url in ("/fhir/Patient?_id=%00", "/fhir/Patient?identifier=a%00b", "/fhir/Patient?%00=1"):
        r = client.get(url)
        assert r.status_code == 400, url
        assert r.json()["resourceType"] == "OperationOutcome"
    body = {"resourceType": "Patient", "name": [{"family": "Smith\u0000"}]}
    r = client.post("/fhir/Patient", json=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code in (400, 422)
    assert r.json()["resourceType"] == "OperationOutcome"
    r = client.post("/fhir/Patient", json={"resourceType": "Patient"},
                    headers={"Content-Type": "application/fhir+json", "If-None-Exist": "identifier=%00"})
    assert r.status_code == 400
    assert client.get("/fhir/Patient").json()["total"] == 0
