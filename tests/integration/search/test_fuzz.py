"""Property tests of the search API on random query strings, on both backends.

Whatever the query (known and unknown parameters, modifiers, prefixes, chains, reverse chains, result
parameters, escapes, garbage, unicode, percent-encoding, very long values), by GET or by POST _search,
with or without `Prefer: handling=strict`: never a 5xx; the body is JSON; a 200 is a searchset Bundle;
a 4xx is an OperationOutcome with at least one issue.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharedcare.app import create_app, open_services
from sharedcare.settings import Settings
from tests.conftest import BASE_URL, NODE_CLIENT, _truncate_all, token_for

EXAMPLES = 150
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A small store: three Patients, an Organization and five Observations, created through the API."""
    backend = str(request.param)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('search-fuzz') / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        _truncate_all(url)
    config = Settings(database_url=url, base_url=BASE_URL, group_commit_ms=0.5, gc_freeze=False)
    services = open_services(config, migrate=backend == "sqlite")
    try:
        with TestClient(create_app(config, services), base_url="http://testserver",
                        raise_server_exceptions=False,
                        headers={"Authorization": f"Bearer {token_for(services, config, NODE_CLIENT)}"}) as client:
            def create(body: dict[str, Any]) -> str:
                r = client.post(f"/fhir/{body['resourceType']}", json=body, headers=FHIR_JSON)
                assert r.status_code == 201, r.text[:300]
                return str(r.json()["id"])

            org = create({"resourceType": "Organization", "name": "Fuzz Hospital", "active": True})
            patients = [
                create({"resourceType": "Patient", "name": [{"family": "Müller", "given": ["José"]}],
                        "gender": "male", "birthDate": "1970-01-01",
                        "managingOrganization": {"reference": f"Organization/{org}"},
                        "identifier": [{"system": "urn:oid:1.2.3", "value": "A1",
                                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                             "code": "MR"}]}}],
                        "meta": {"tag": [{"system": "http://example.org/t", "code": "fuzz"}]}}),
                create({"resourceType": "Patient", "name": [{"family": "Smith", "given": ["Ann", "B"]}],
                        "gender": "female", "birthDate": "1985-07", "deceasedBoolean": False,
                        "telecom": [{"system": "phone", "value": "+1 555 0100"}]}),
                create({"resourceType": "Patient", "name": [{"text": "名前 テスト"}], "birthDate": "2001"}),
            ]
            for n, (code, value) in enumerate([("8302-2", 170.5), ("29463-7", 72), ("8302-2", 99.95),
                                               ("2339-0", 0.001), ("29463-7", 100)]):
                create({"resourceType": "Observation", "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": f"code {code}"},
                        "subject": {"reference": f"Patient/{patients[n % 3]}"},
                        "effectiveDateTime": f"20{10 + n}-0{n + 1}-1{n}T10:00:00+02:00",
                        "valueQuantity": {"value": value, "unit": "u", "system": "http://unitsofmeasure.org",
                                          "code": "kg"},
                        "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                                       "valueQuantity": {"value": 120 + n, "system": "http://unitsofmeasure.org",
                                                         "code": "mm[Hg]"}}]})
            yield client
    finally:
        services.committer.close()
        services.engine.dispose()


# -- strategies -----------------------------------------------------------------------------------

TYPES = ["Patient", "Observation", "Patient", "Observation", "Encounter", "Organization"]
NAMES = [
    # known, for Patient or Observation (or both)
    "name", "family", "given", "birthdate", "gender", "identifier", "telecom", "phone", "address", "active",
    "organization", "deceased", "code", "subject", "patient", "value-quantity", "date", "status", "category",
    "component-code-value-quantity", "code-value-quantity", "combo-code", "value-string", "encounter",
    "_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_text", "_content", "_list", "_query",
    "_filter",
    # chains and reverse chains
    "subject:Patient.name", "subject.name", "patient.family", "patient.organization.name",
    "subject:Patient.organization.name", "_has:Observation:patient:code", "_has:Observation:subject:value-quantity",
    "_has:Observation:patient:_has:Observation:patient:code", "_has:Nope:patient:code", "_has:Observation",
    "patient.", ".name", "subject:Nope.name", "subject:Patient.nope",
    # result parameters
    "_sort", "_count", "_include", "_revinclude", "_include:iterate", "_revinclude:iterate", "_summary",
    "_elements", "_total", "_contained", "_containedType", "_cursor", "_pretty",
    # unknown
    "foo", "x-unknown", "", "_", "__proto__", "name name", "näme", "📈",
]
MODIFIERS = ["", "", "", ":exact", ":contains", ":missing", ":not", ":text", ":of-type", ":below", ":above",
             ":Patient", ":identifier", ":iterate", ":in", ":not-in", ":type", ":nope", ":", "::", ":Patient:exact"]
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "xx"]
VALUES = [
    "true", "false", "maybe", "müller", "MULLER", "José", "smith,jones", "smith\\,jones", "a\\", "\\", "\\\\",
    "http://loinc.org|8302-2", "|8302-2", "http://loinc.org|", "|", "||", "a|b|c", "8302-2$gt100", "$", "$$",
    "http://loinc.org|8480-6$gt100|http://unitsofmeasure.org|mm[Hg]", "170.5||kg", "170.5|http://unitsofmeasure.org|kg",
    "2010", "2010-01", "2010-01-10", "2010-01-10T10:00:00Z", "2010-01-10T10:00:00+02:00", "2010-13-45",
    "2010-01-10T25:61:61Z", "1e3", "-1", "1e999999", "NaN", "Infinity", "0.0000000000000000000001",
    "99999999999999999999999999999999", "Patient/1", "Patient/", "/", "http://testserver/fhir/Patient/x",
    "Observation:patient", "Patient:organization", "*", "Observation:subject:Patient", "date,-name", "-", "_id",
    "count", "text", "data", "true,false", "accurate", "estimate", "none", "0", "-5", "1001", "abc",
    "name,birthdate", "%", "%25", "%00", "\x00", "\u0000abc", "\ud7ff", "\ufeff", "\u202e", "名前", "ﬁ", "Ⅻ",
    " ", "  spaced  ", "\t\n", "'", '"', "'; drop table resource; --", "%' or '1'='1", "a" * 5000,
    "," * 50, "\\" * 51, "|" * 40, "$" * 40,
]

names = st.builds(lambda n, m: n + m, st.sampled_from(NAMES), st.sampled_from(MODIFIERS)) | st.text(max_size=12)
values = (
    st.builds(lambda p, v: p + v, st.sampled_from(PREFIXES), st.sampled_from(VALUES))
    | st.text(max_size=40)
    | st.lists(st.sampled_from(VALUES[:60]), min_size=2, max_size=4).map(",".join)
    | st.builds(lambda p, d: f"{p}{d}", st.sampled_from(PREFIXES),
                st.dates().map(str) | st.datetimes().map(lambda d: d.isoformat()))
    | st.builds(lambda p, x: f"{p}{x}", st.sampled_from(PREFIXES),
                st.decimals(allow_nan=True, allow_infinity=True).map(str))
)
pairs = st.lists(st.tuples(names, values), max_size=5)
# raw query strings: percent-escapes valid or not, stray separators, bare keys
RAW_PIECES = [*"ab_=&%:.,|$\\-+;#?/ 0129fFzZ", "%zz", "%C3%", "%FF", "%00", "%E2%82", "é", "名", "name", "_has",
              "Observation", "code", "_sort", "_count", "gt"]
raw_queries = st.lists(st.sampled_from(RAW_PIECES), max_size=30).map("".join)


def check(r: Any, res_type: str) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500], str(r.request.url)[:300])
    body = r.json()  # always JSON (we ask for it)
    assert isinstance(body, dict), body
    if r.status_code == 200:
        assert body.get("resourceType") == "Bundle", body
        assert body.get("type") == "searchset", body
        for entry in body.get("entry", []):
            if entry.get("search", {}).get("mode", "match") == "match":
                assert entry["resource"]["resourceType"] == res_type, entry
    else:
        assert 400 <= r.status_code < 500, r.status_code
        assert body.get("resourceType") == "OperationOutcome", body
        assert isinstance(body.get("issue"), list), body
        assert body["issue"], body


def headers(strict: bool) -> dict[str, str]:
    h = {"Accept": "application/fhir+json"}
    if strict:
        h["Prefer"] = "handling=strict"
    return h


def keep(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`_format` would change the answer away from JSON, which is what is being checked."""
    return [(k, v) for k, v in params if not k.startswith("_format")]


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(res_type=st.sampled_from(TYPES), params=pairs, strict=st.booleans())
def test_get_search_answers_a_bundle_or_an_operation_outcome(api: TestClient, res_type: str,
                                                              params: list[tuple[str, str]], strict: bool) -> None:
    check(api.get(f"/fhir/{res_type}?{urlencode(keep(params))}", headers=headers(strict)), res_type)


@FUZZ
@given(res_type=st.sampled_from(TYPES), params=pairs, strict=st.booleans())
def test_post_search_answers_a_bundle_or_an_operation_outcome(api: TestClient, res_type: str,
                                                               params: list[tuple[str, str]], strict: bool) -> None:
    h = headers(strict) | {"Content-Type": "application/x-www-form-urlencoded"}
    check(api.post(f"/fhir/{res_type}/_search", content=urlencode(keep(params)), headers=h), res_type)


@FUZZ
@given(res_type=st.sampled_from([*TYPES, "Nope", "patient"]), query=raw_queries, strict=st.booleans(),
       post=st.booleans())
def test_raw_query_strings_answer_a_bundle_or_an_operation_outcome(api: TestClient, res_type: str, query: str,
                                                                   strict: bool, post: bool) -> None:
    if "_format" in query:
        return
    # keep the characters the URL grammar needs as they are, encode the rest (non-ASCII, spaces)
    target = quote(query, safe="=&%:.,|$\\-+;/?_")
    if post:
        h = headers(strict) | {"Content-Type": "application/x-www-form-urlencoded"}
        check(api.post(f"/fhir/{res_type}/_search", content=target.encode(), headers=h), res_type)
    else:
        check(api.get(f"/fhir/{res_type}?{target}", headers=headers(strict)), res_type)


@pytest.mark.parametrize("query", [
    "name=" + "a" * 20000, "_count=-1", "_count=abc", "_count=99999999999999999999", "_sort=" + ",".join(["name"] * 50),
    "_include=*", "_include=Observation:subject:Patient&_revinclude=Observation:patient", "_summary=count",
    "_elements=id,name", "_total=accurate", "_has:Observation:patient:code=" + "x," * 500,
    "subject:Patient.organization.name.nope=1", "birthdate=ap2000", "name:missing=maybe", "%zz=1", "=&=&=",
    "_id=" + ",".join(str(n) for n in range(1000)), "name=%00", "identifier=%00|%00", "_lastUpdated=gt%00",
])
@pytest.mark.parametrize("strict", [False, True])
def test_edge_queries_answer_a_bundle_or_an_operation_outcome(api: TestClient, query: str, strict: bool) -> None:
    check(api.get(f"/fhir/Patient?{query}", headers=headers(strict)), "Patient")
    check(api.post("/fhir/Patient/_search", content=query.encode(),
                   headers=headers(strict) | {"Content-Type": "application/x-www-form-urlencoded"}), "Patient")
