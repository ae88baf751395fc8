"""Differential test of the search engine against the brute-force oracle, on both backends.

Every Synthea bundle of the conformance data is loaded as a transaction through the API, with a small
bundle of our own that covers what Synthea lacks (accents, ß, SQL wildcards, Money, number, uri,
Timing, open Periods, meta tags/profiles/security/source, logical references, escaped characters);
then a few resources are updated and deleted, so the index has rows to forget. Every stored resource
is read back and handed to the oracle. Then about 900 searches, generated with a seeded RNG from
values present in the data, run through `GET /fhir/{type}` (some through `POST _search`, some with
`Prefer: handling=strict`, some in pages of 7, some also as `_summary=count`, some with `_include` or
`_revinclude`), following `next` links; the ids returned must be the oracle's, `Bundle.total` must
count them, a `_sort` must order them, and included entries must be the referenced resources.

One test per backend (so that xdist loads each store once); its failure lists every disagreement with
the search, the ids on one side only and what the oracle sees in them.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from sharedcare.app import create_app, open_services
from sharedcare.settings import Settings
from tests.conftest import BASE_URL, NODE_CLIENT, _truncate_all, token_for
from tests.integration.search.oracle import (
    HIGHEST,
    LOWEST,
    Oracle,
    Registry,
    reference_target,
    token_pairs,
    value_ranges,
)
from tests.support.conformance import conformance_path

pytestmark = pytest.mark.slow

SEED = 20240611
FHIR_JSON = {"Content-Type": "application/fhir+json"}
MIN_SEARCHES = 300


# -- the store ------------------------------------------------------------------------------------

def extra_bundle() -> dict[str, Any]:
    """Resources Synthea lacks, as one transaction (urn:uuid references between them)."""
    def u(n: int) -> str:
        return f"urn:uuid:00000000-0000-4000-8000-{n:012d}"

    ucum = "http://unitsofmeasure.org"
    loinc = "http://loinc.org"
    tags = "http://example.org/tags"
    resources: list[tuple[int, dict[str, Any]]] = [
        (1, {"resourceType": "Patient",
             "meta": {"tag": [{"system": tags, "code": "oracle"}, {"code": "no-system"}],
                      "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
                      "profile": ["http://example.org/fhir/StructureDefinition/oracle-patient"],
                      "source": "http://example.org/source#oracle"},
             "identifier": [
                 {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                           "text": "Hospital number"},
                  "system": "urn:oid:1.2.3", "value": "MRN-0001"},
                 {"system": "urn:oid:1.2.3", "value": "a,b|c$d\\e"}],
             "active": True,
             "name": [{"family": "Müller", "given": ["José", "Zoë"], "prefix": ["Dr."]},
                      {"use": "nickname", "text": "Jose Mueller"}],
             "telecom": [{"system": "phone", "value": "+44 20 7946 0000"},
                         {"system": "email", "value": "jose@example.org"}],
             "gender": "male", "birthDate": "1975-06",
             "deceasedDateTime": "2021-02-03T04:05:06+02:00",
             "address": [{"line": ["1 Rue de l'Église"], "city": "São Paulo", "state": "SP",
                          "postalCode": "01000-000", "country": "BR"}],
             "managingOrganization": {"reference": u(4)}}),
        (2, {"resourceType": "Patient",
             "meta": {"tag": [{"system": tags, "code": "ORACLE"}], "source": "http://example.org/source#other"},
             "name": [{"family": "van der  Berg", "given": ["Ærin"]}],
             "gender": "female", "birthDate": "1990", "address": [{"city": "Zürich", "country": "CH"}]}),
        (3, {"resourceType": "Patient", "active": False,
             "name": [{"family": "O'Brien-Smith", "given": ["Ann Marie"], "suffix": ["Jr"]}],
             "gender": "other", "birthDate": "2000-02-29", "managingOrganization": {"reference": u(4)}}),
        (4, {"resourceType": "Organization", "name": "Smith, Jones & Co", "alias": ["SJC"], "active": True,
             "identifier": [{"system": "http://example.org/org", "value": "SJC-1"}],
             "address": [{"line": ["2 Königsallee"], "city": "Düsseldorf", "country": "DE"}]}),
        (5, {"resourceType": "Organization", "name": "100% Care_Ltd", "active": False,
             "address": [{"line": ["Hauptstraße 5"], "city": "Gießen", "country": "DE"}]}),
        (10, {"resourceType": "Observation", "status": "final",
              "meta": {"profile": ["http://example.org/fhir/StructureDefinition/oracle-obs"],
                       "tag": [{"system": tags, "code": "oracle"}]},
              "code": {"coding": [{"system": loinc, "code": "29463-7", "display": "Body Weight"}], "text": "Weight"},
              "subject": {"reference": u(1)},
              "performer": [{"identifier": {"system": "http://example.org/staff", "value": "S-1"}},
                            {"reference": u(4)}],
              "effectivePeriod": {"start": "2020-03-01"},
              "valueQuantity": {"value": 72.50, "unit": "kilogram", "system": ucum, "code": "kg"}}),
        (11, {"resourceType": "Observation", "status": "preliminary",
              "code": {"text": "Free text only"}, "subject": {"reference": u(2)},
              "effectiveTiming": {"event": ["2019-05-05T10:00:00Z", "2019-06-06"]},
              "valueString": "Très  bien, merci"}),
        (12, {"resourceType": "Observation", "status": "final",
              "code": {"coding": [{"system": loinc, "code": "21112-8", "display": "Birth date"}]},
              "subject": {"reference": u(3)}, "effectiveInstant": "2018-07-14T12:00:00.123Z",
              "valueDateTime": "2018-07-14T12:00:00+02:00"}),
        (13, {"resourceType": "Observation", "status": "amended",
              "code": {"coding": [{"system": loinc, "code": "2339-0", "display": "Glucose"}]},
              "subject": {"reference": u(1)}, "effectiveDateTime": "2021",
              "valueQuantity": {"value": 0.001, "unit": "g", "system": ucum, "code": "g"}}),
        (14, {"resourceType": "Observation", "status": "final",
              "code": {"coding": [{"system": loinc, "code": "94531-1", "display": "SARS-CoV-2 RNA"}]},
              "subject": {"reference": u(2)}, "effectiveDateTime": "2021-12-24T23:30:00-05:00",
              "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "260385009",
                                                   "display": "Negative"}], "text": "Negative result"}}),
        (15, {"resourceType": "Observation", "status": "final",
              "code": {"coding": [{"system": loinc, "code": "85354-9", "display": "Blood pressure panel"}]},
              "subject": {"reference": u(3)}, "effectiveDateTime": "2022-01-01T00:00:00Z",
              "component": [
                  {"code": {"coding": [{"system": loinc, "code": "8480-6"}]},
                   "valueQuantity": {"value": 150, "unit": "mmHg", "system": ucum, "code": "mm[Hg]"}},
                  {"code": {"coding": [{"system": loinc, "code": "8462-4"}]},
                   "valueQuantity": {"value": 95, "unit": "mmHg", "system": ucum, "code": "mm[Hg]"}}]}),
        (20, {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": u(1)},
              "prediction": [{"probabilityDecimal": 0.25}, {"probabilityDecimal": 0.7}]}),
        (21, {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": u(2)},
              "prediction": [{"probabilityDecimal": 12.5}]}),
        (22, {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": u(3)},
              "prediction": [{"probabilityDecimal": 100}]}),
        (23, {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": u(3)},
              "prediction": [{"probabilityDecimal": 0.35}]}),
        (24, {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": u(2)},
              "prediction": [{"probabilityDecimal": 0.3}]}),
        (30, {"resourceType": "Invoice", "status": "issued", "subject": {"reference": u(1)},
              "totalGross": {"value": 1250.50, "currency": "EUR"},
              "totalNet": {"value": 1000, "currency": "EUR"}}),
        (31, {"resourceType": "Invoice", "status": "draft", "subject": {"reference": u(2)},
              "totalGross": {"value": 99.99, "currency": "USD"}}),
        (40, {"resourceType": "ValueSet", "status": "active", "name": "OracleColours",
              "url": "http://example.org/fhir/ValueSet/oracle-colours", "version": "1.0",
              "compose": {"include": [{"system": "http://example.org/fhir/CodeSystem/colours"}]}}),
        (41, {"resourceType": "ValueSet", "status": "draft", "name": "OracleColoursExtended",
              "url": "http://example.org/fhir/ValueSet/oracle-colours/extended"}),
        (42, {"resourceType": "ValueSet", "status": "retired", "name": "Other",
              "url": "urn:uuid:5b9c8f8e-7a43-4bd5-9bd3-1f4a2b2c3d4e"}),
        (50, {"resourceType": "Encounter", "status": "in-progress",
              "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
              "subject": {"reference": u(1)}, "serviceProvider": {"reference": u(4)},
              "length": {"value": 45, "unit": "min", "system": ucum, "code": "min"},
              "period": {"start": "2020-03-01T09:00:00+01:00"}}),
        (51, {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": u(2)},
              "period": {"end": "2022-12-31"},
              "activity": [{"detail": {"status": "scheduled",
                                       "code": {"text": "Physiotherapy"},
                                       "scheduledTiming": {"event": ["2022-01-15T08:00:00Z"]}}}]}),
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": u(n), "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
        for n, r in resources]}


def _json(data: bytes) -> Any:
    """Decimals keep their digits (the oracle compares them exactly)."""
    return json.loads(data, parse_float=Decimal)


@dataclass
class World:
    backend: str
    client: TestClient
    oracle: Oracle
    resources: list[dict[str, Any]]
    stale: list[Case]  # searches for values that updates replaced or deletes removed


def _encode(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource, default=float).encode()


def change_some(client: TestClient, resources: list[dict[str, Any]]) -> tuple[list[Case], set[str]]:
    """Update and delete a few resources after the load, so that the index has old rows to forget.
    Returns searches on the values that are gone (the oracle, fed the current state, expects no stale hit)
    and the Type/id of every resource touched."""
    rng = random.Random(SEED + 1)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(copy.deepcopy(r))
    stale: list[Case] = []
    touched: set[str] = set()

    def put(r: dict[str, Any]) -> None:
        touched.add(f"{r['resourceType']}/{r['id']}")
        got = client.put(f"/fhir/{r['resourceType']}/{r['id']}", content=_encode(r), headers=FHIR_JSON)
        assert got.status_code == 200, got.text[:300]

    def delete(r: dict[str, Any]) -> None:
        touched.add(f"{r['resourceType']}/{r['id']}")
        got = client.delete(f"/fhir/{r['resourceType']}/{r['id']}")
        assert got.status_code in (200, 204, 409, 412), got.text[:300]  # a refused delete leaves it in place

    for p in rng.sample([p for p in by_type["Patient"] if p["name"][0].get("family")], 3):
        old = p["name"][0]["family"]
        p["name"][0]["family"] = f"Renamed{rng.randint(100, 999)}"
        p["birthDate"] = "1901-01-01"
        put(p)
        stale += [Case("stale", "Patient", [("family", esc(old))]),
                  Case("stale", "Patient", [("name:exact", esc(old))])]
    weights = [o for o in by_type["Observation"] if "valueQuantity" in o]
    for o in rng.sample(weights, 10):
        old_value = o["valueQuantity"]["value"]
        o["valueQuantity"]["value"] = 12345.5
        o["status"] = "amended"
        put(o)
        stale.append(Case("stale", "Observation", [("_id", o["id"]), ("value-quantity", str(old_value))]))
    for e in rng.sample(by_type["Encounter"], 3):
        e["period"] = {"start": "1902-02-02T02:02:02Z", "end": "1902-02-03T02:02:02Z"}
        e["class"] = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"}
        put(e)
    for res_type, n in (("Immunization", 5), ("Procedure", 3), ("AllergyIntolerance", 1), ("Observation", 5),
                        ("Encounter", 2), ("RiskAssessment", 1)):
        for r in rng.sample(by_type[res_type], n):
            delete(r)
            stale.append(Case("stale", res_type, [("_id", r["id"])]))
    stale += [Case("stale", "Encounter", [("class", "HH")]), Case("stale", "Encounter", [("date", "1902")]),
              Case("stale", "Patient", [("birthdate", "1901")]),
              Case("stale", "Observation", [("value-quantity", "12345.5")]),
              Case("stale", "Observation", [("status", "amended")])]
    return stale, touched


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = conformance_path("synthea-r4")
    registry = Registry.load(conformance_path("fhir-r4", "search-parameters.json"))
    backend = str(request.param)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('search-oracle') / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        _truncate_all(url)
    settings = Settings(database_url=url, base_url=BASE_URL, group_commit_ms=0.5, gc_freeze=False)
    services = open_services(settings, migrate=backend == "sqlite")
    try:
        with TestClient(create_app(settings, services), base_url="http://testserver",
                        raise_server_exceptions=False,
                        headers={"Authorization": f"Bearer {token_for(services, settings, NODE_CLIENT)}"}) as client:
            files = sorted(folder.glob("*.json"),
                           key=lambda p: (not p.name.startswith(("hospital", "practitioner")), p.name))
            assert len(files) >= 20
            bodies = [Path(p).read_bytes() for p in files] + [json.dumps(extra_bundle()).encode()]
            locations: list[str] = []
            for body in bodies:
                r = client.post("/fhir", content=body, headers=FHIR_JSON)
                assert r.status_code == 200, r.text[:500]
                for entry in r.json()["entry"]:
                    locations.append(entry["response"]["location"].split("/_history")[0])
            loaded = []
            for ref in locations:
                r = client.get(f"/fhir/{ref}")
                assert r.status_code == 200, (ref, r.text[:300])
                loaded.append(_json(r.content))
            stale, touched = change_some(client, loaded)
            resources = []
            for ref, resource in zip(locations, loaded, strict=True):
                if ref in touched:  # the state after the update or delete, as the server has it
                    r = client.get(f"/fhir/{ref}")
                    if r.status_code in (404, 410):
                        continue
                    assert r.status_code == 200, (ref, r.text[:300])
                    resource = _json(r.content)
                resources.append(resource)
            yield World(backend, client, Oracle(registry, resources, BASE_URL), resources, stale)
    finally:
        services.committer.close()
        services.engine.dispose()


# -- the searches ---------------------------------------------------------------------------------

@dataclass
class Case:
    """One search. Variants: by POST _search, with `Prefer: handling=strict`, in pages of `count`,
    also asked as `_summary=count`; `include` is an `_include` (or `_revinclude`) whose entries are checked."""

    feature: str
    res_type: str
    params: list[tuple[str, str]]
    post: bool = False
    strict: bool = False
    count: int = 1000
    summary: bool = False
    include: tuple[str, str] | None = None

    def __str__(self) -> str:
        extra = [("_count", str(self.count))] if self.count != 1000 else []
        extra += [self.include] if self.include else []
        return f"{self.res_type}?" + "&".join(f"{k}={v}" for k, v in [*self.params, *extra])

    def how(self) -> str:
        return ", ".join(["POST _search" if self.post else "GET", *(["strict"] if self.strict else [])])


PRECISIONS = ("year", "month", "day", "second")
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")


def render_instant(micros: int, precision: str, offset_minutes: int = 0) -> str:
    tz = timezone(timedelta(minutes=offset_minutes))
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    local = t.astimezone(tz)
    if precision == "year":
        return f"{t.year:04d}"
    if precision == "month":
        return f"{t.year:04d}-{t.month:02d}"
    if precision == "day":
        return f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    m = abs(offset_minutes)
    return f"{text}{sign}{m // 60:02d}:{m % 60:02d}"


def esc(text: str) -> str:
    """A value from the data as a search value: the R4 escapes for \\ , $ and |."""
    return "".join("\\" + ch if ch in "\\,$|" else ch for ch in text)


def number_text(value: Decimal, places: int) -> str:
    q = Decimal(1).scaleb(-places)
    return str(value.quantize(q))


@dataclass
class Generator:
    oracle: Oracle
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))
    cases: list[Case] = field(default_factory=list)

    # helpers ---------------------------------------------------------------------------------------
    def add(self, feature: str, res_type: str, *params: tuple[str, str]) -> None:
        self.cases.append(Case(feature, res_type, list(params)))

    def having(self, res_type: str, code: str, keep: Callable[[Any], bool] = bool) -> list[tuple[str, list[Any]]]:
        """(id, values) of the resources whose values for `code` include one that `keep` accepts."""
        out = []
        for i in self.oracle.ids(res_type):
            vals = [v for v in self.oracle.values(res_type, code, i) if keep(v)]
            if vals:
                out.append((i, vals))
        return out

    def pick(self, res_type: str, code: str, keep: Callable[[Any], bool] = bool) -> tuple[str, Any] | None:
        found = self.having(res_type, code, keep)
        if not found:
            return None
        i, vals = self.rng.choice(found)
        return i, self.rng.choice(vals)

    def pick_through(self, res_type: str, key: str, target: str, code: str) -> Any:
        """A value of `code` on a `target` that some `res_type` refers to by the reference parameter of `key`
        (so that the chained search generated from it matches something)."""
        ref_param = key.split(".", 1)[0].split(":", 1)[0]
        present = self.oracle.by_type.get(target, {})
        targets = sorted({t[1] for t in self.refs(res_type, ref_param) if t[0] == target and t[1] in present})
        candidates = [(i, v) for i in targets for v in self.oracle.values(target, code, i)]
        return self.rng.choice(candidates)[1] if candidates else None

    def strings(self, res_type: str, code: str) -> list[str]:
        out: list[str] = []
        for _, vals in self.having(res_type, code):
            for v in vals:
                if isinstance(v, str):
                    out.append(v)
                elif isinstance(v, dict):
                    for key in ("family", "given", "prefix", "suffix", "text", "line", "city", "state",
                                "postalCode", "country"):
                        item = v.get(key)
                        out.extend([item] if isinstance(item, str) else [x for x in item or [] if isinstance(x, str)])
        return sorted(set(out))

    def codes(self, res_type: str, code: str) -> list[tuple[str | None, str]]:
        pairs = {(s, c) for _, vals in self.having(res_type, code) for v in vals
                 for s, c in token_pairs(v) if c is not None}
        return sorted(pairs, key=lambda p: (p[0] or "", p[1]))

    def refs(self, res_type: str, code: str) -> list[tuple[str, str]]:
        targets = {reference_target(v, self.oracle.base) for _, vals in self.having(res_type, code) for v in vals}
        return sorted(t for t in targets if t is not None)

    # features --------------------------------------------------------------------------------------
    def string_cases(self) -> None:
        plan = [("Patient", "family"), ("Patient", "given"), ("Patient", "name"), ("Patient", "address"),
                ("Patient", "address-city"), ("Patient", "address-state"), ("Patient", "address-postalcode"),
                ("Patient", "address-country"), ("Practitioner", "name"), ("Practitioner", "family"),
                ("Practitioner", "given"), ("Practitioner", "address-city"), ("Organization", "name"),
                ("Organization", "address"), ("Organization", "address-city"), ("Observation", "value-string")]
        for res_type, code in plan:
            words = self.strings(res_type, code)
            for _ in range(2):
                w = self.rng.choice(words)
                cut = w[: self.rng.randint(1, len(w))]
                self.add("string", res_type, (code, esc(self.rng.choice([cut, cut.upper(), cut.lower()]))))
            w = self.rng.choice(words)
            self.add("string:exact", res_type, (f"{code}:exact", esc(w)))
            self.add("string:exact", res_type, (f"{code}:exact", esc(w.swapcase())))
            if len(w) > 3:
                start = self.rng.randint(1, len(w) - 2)
                self.add("string:contains", res_type,
                         (f"{code}:contains", esc(w[start:start + self.rng.randint(1, len(w) - start)].lower())))
            a, b = self.rng.sample(words, 2)
            self.add("string:or", res_type, (code, f"{esc(a[:3])},{esc(b)}"))
        # accents, case, whitespace, escaped comma: on the extras
        for res_type, code, value in [
            ("Patient", "family", "muller"), ("Patient", "family", "MÜLL"), ("Patient", "given", "jose"),
            ("Patient", "given", "zoe"), ("Patient", "name", "aerin"), ("Patient", "name", "ærin"),
            ("Patient", "address-city", "sao"), ("Patient", "address-city", "ZURICH"),
            ("Patient", "address", "rue de l'eglise"), ("Patient", "family", "van der berg"),
            ("Patient", "family", "van   der b"), ("Patient", "name", "dr."), ("Patient", "name", "jr"),
            ("Patient", "name", "jose mueller"), ("Patient", "given", "ann marie"),
            ("Organization", "name", "smith\\, jones"), ("Organization", "name", "sjc"),
            ("Organization", "address-city", "dusseldorf"), ("Observation", "value-string", "tres bien\\, m"),
            ("Observation", "value-string", "negative"),
            ("Patient", "family", "Mu\u0308ller"), ("Organization", "address-city", "GIESSEN"),
            ("Organization", "address-city", "gieß"), ("Organization", "address", "hauptstrasse"),
            # SQL LIKE wildcards are ordinary characters in a FHIR search
            ("Organization", "name", "%"), ("Organization", "name", "_"), ("Organization", "name", "100%"),
            ("Organization", "name", "100_"), ("Patient", "family", "M_ller"), ("Patient", "family", "%ller"),
            ("Organization", "name", "100\\"),
        ]:
            self.add("string:normalised", res_type, (code, value))
        for res_type, code, value in [("Patient", "family:exact", "Müller"), ("Patient", "family:exact", "Muller"),
                                      ("Patient", "family:exact", "van der  Berg"),
                                      ("Organization", "name:exact", "Smith\\, Jones & Co"),
                                      ("Patient", "name:contains", "ÜLLE"), ("Patient", "address:contains", "paulo"),
                                      ("Patient", "given:contains", "arie"),
                                      ("Organization", "name:contains", "%"), ("Organization", "name:contains", "_"),
                                      ("Organization", "name:contains", "e_l"), ("Organization", "name:exact", "100%"),
                                      ("Organization", "name:exact", "100% Care_Ltd"),
                                      ("Patient", "family:contains", "%")]:
            self.add("string:exact", res_type, (code, value))

    def token_cases(self) -> None:
        plan = [("Observation", "code"), ("Observation", "category"), ("Observation", "status"),
                ("Observation", "value-concept"), ("Observation", "component-code"), ("Observation", "combo-code"),
                ("Condition", "code"), ("Condition", "clinical-status"), ("Condition", "verification-status"),
                ("Encounter", "class"), ("Encounter", "type"), ("Encounter", "status"), ("Encounter", "reason-code"),
                ("Procedure", "code"), ("Procedure", "status"), ("MedicationRequest", "code"),
                ("MedicationRequest", "status"), ("MedicationRequest", "intent"), ("Immunization", "vaccine-code"),
                ("Immunization", "status"), ("DiagnosticReport", "code"), ("DiagnosticReport", "category"),
                ("Claim", "status"), ("Claim", "use"), ("Claim", "priority"), ("ExplanationOfBenefit", "identifier"),
                ("ExplanationOfBenefit", "status"), ("CarePlan", "category"), ("CarePlan", "activity-code"),
                ("CarePlan", "status"), ("AllergyIntolerance", "code"), ("AllergyIntolerance", "criticality"),
                ("AllergyIntolerance", "clinical-status"), ("AllergyIntolerance", "category"),
                ("Organization", "identifier"), ("Organization", "type"), ("Practitioner", "identifier"),
                ("Practitioner", "gender"), ("Patient", "gender"), ("Patient", "identifier"), ("Patient", "language"),
                ("Goal", "lifecycle-status")]
        for res_type, code in plan:
            pairs = self.codes(res_type, code)
            system, value = self.rng.choice(pairs)
            self.add("token", res_type, (code, esc(value)))
            if system:
                self.add("token:system", res_type, (code, f"{esc(system)}|{esc(value)}"))
                self.add("token:system", res_type, (code, f"{system}|"))
                self.add("token:system", res_type, (code, f"|{value}"))
            else:
                self.add("token:system", res_type, (code, f"|{value}"))
            if len(pairs) > 1:
                (s1, c1), (_, c2) = self.rng.sample(pairs, 2)
                self.add("token:or", res_type, (code, f"{esc(s1) + '|' if s1 else ''}{esc(c1)},{esc(c2)}"))
            if self.rng.random() < 0.5:
                self.add("token:not", res_type, (f"{code}:not", value))
        for res_type, code in [("Observation", "code"), ("Condition", "code"), ("Encounter", "type"),
                               ("Immunization", "vaccine-code"), ("Procedure", "code"), ("Patient", "language"),
                               ("MedicationRequest", "code"), ("Organization", "type")]:
            found = self.pick(res_type, code, lambda v: isinstance(v, dict) and isinstance(v.get("text"), str))
            assert found is not None
            text = found[1]["text"]
            self.add("token:text", res_type, (f"{code}:text", esc(text[: self.rng.randint(3, len(text))].lower())))
        self.add("token:text", "Patient", ("identifier:text", "hospital"))
        self.add("token:text", "Observation", ("code:text", "free text"))
        # identifiers
        found = self.pick("Patient", "identifier", lambda v: "type" in v)
        assert found is not None
        ident = found[1]
        coding = ident["type"]["coding"][0]
        of_type = f"{coding['system']}|{coding['code']}|{ident['value']}"
        self.add("token:of-type", "Patient", ("identifier:of-type", of_type))
        self.add("token:of-type", "Patient", ("identifier:of-type", f"{coding['system']}|XX|{ident['value']}"))
        self.add("token:of-type", "Patient", ("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-0001"))
        self.add("token:escape", "Patient", ("identifier", "urn:oid:1.2.3|a\\,b\\|c\\$d\\\\e"))
        self.add("token:escape", "Patient", ("identifier", "a\\,b\\|c\\$d\\\\e"))
        self.add("token:escape", "Patient", ("identifier", "urn:oid:1.2.3|MRN-0001,urn:oid:1.2.3|nothing"))
        # booleans and primitives
        for res_type, code in [("Organization", "active"), ("Practitioner", "active"), ("Patient", "active"),
                               ("Patient", "deceased")]:
            self.add("token:boolean", res_type, (code, self.rng.choice(["true", "false"])))
        self.add("token:boolean", "Patient", ("active:not", "true"))
        # ContactPoint (no system part) and case sensitivity
        phone = self.pick("Patient", "phone")
        assert phone is not None
        self.add("token:telecom", "Patient", ("phone", phone[1]["value"]))
        self.add("token:telecom", "Patient", ("phone", "+44 20 7946 0000"))
        self.add("token:telecom", "Patient", ("email", "jose@example.org"))
        self.add("token:telecom", "Patient", ("telecom", "jose@example.org"))
        self.add("token", "Patient", ("gender", "FEMALE"))
        self.add("token", "Observation", ("status", "FINAL"))
        self.add("token:not", "Observation", ("status:not", "final,amended"))
        self.add("token:not", "Observation", ("value-concept:not", "260385009"))

    def date_anchor(self, res_type: str, code: str) -> int | None:
        """A finite instant (microseconds) of a stored value of the date parameter, or None."""
        found = self.pick(res_type, code, lambda v: bool(value_ranges(v)))
        if found is None:
            return None
        lo, hi = self.rng.choice(value_ranges(found[1]))
        anchor = lo if lo != LOWEST else hi - 1
        return anchor if anchor < HIGHEST - 1 else None

    def date_cases(self) -> None:
        plan = [("Patient", "birthdate"), ("Patient", "death-date"), ("Observation", "date"),
                ("Condition", "onset-date"), ("Condition", "abatement-date"), ("Condition", "recorded-date"),
                ("Encounter", "date"), ("Procedure", "date"), ("Immunization", "date"),
                ("MedicationRequest", "authoredon"), ("DiagnosticReport", "date"), ("DiagnosticReport", "issued"),
                ("Claim", "created"), ("ExplanationOfBenefit", "created"), ("CarePlan", "date"),
                ("AllergyIntolerance", "date"), ("Observation", "value-date"), ("CarePlan", "activity-date")]
        for n, (res_type, code) in enumerate(plan * 4):
            anchor = self.date_anchor(res_type, code)
            if anchor is None:
                continue
            precision = PRECISIONS[n % 4] if n < len(plan) * 2 else self.rng.choice(PRECISIONS)
            shift = self.rng.choice([0, 0, -1, 1]) * {"year": 366, "month": 31, "day": 1, "second": 0}[precision]
            micros = anchor + shift * 86_400_000_000 + (self.rng.choice([0, -1, 1]) * 1_000_000
                                                        if precision == "second" else 0)
            offset = self.rng.choice([0, 0, 120, -300, 330]) if precision == "second" else 0
            prefix = DATE_PREFIXES[n % len(DATE_PREFIXES)]
            text = render_instant(micros, precision, offset)
            self.add("date", res_type, (code, ("" if prefix == "eq" and n % 3 == 0 else prefix) + text))
        # windows of one to three months around a stored value (found month by month from the window
        # index), with every pair of lower and upper prefixes
        for n, (res_type, code) in enumerate(plan * 2):
            anchor = self.date_anchor(res_type, code)
            if anchor is None:
                continue
            start = anchor - self.rng.randint(0, 40) * 86_400_000_000
            end = start + self.rng.randint(20, 95) * 86_400_000_000
            low_prefix, high_prefix = ("ge", "gt", "sa")[n % 3], ("lt", "le", "eb")[(n // 3) % 3]
            precision = ("day", "month", "second")[n % 3]
            self.add("date:window", res_type, (code, low_prefix + render_instant(start, precision, 0)),
                     (code, high_prefix + render_instant(end, precision, 0)))
        # ranges by two ANDed bounds, and OR of dates
        self.add("date:range", "Encounter", ("date", "ge2015-01-01"), ("date", "lt2016-01-01"))
        self.add("date:range", "Observation", ("date", "gt2012"), ("date", "le2013-06"))
        self.add("date:or", "Patient", ("birthdate", "1975,1990,2000-02-29"))
        self.add("date:or", "Immunization", ("date", "lt1990,gt2019-06"))
        # open periods, Timing events, instants, offsets (the extras)
        for value in ("ge2020-03-01", "gt2020-03-01", "sa2020-02-29", "eb2020-02-29", "eq2020-03", "ne2020"):
            self.add("date:open", "Encounter", ("date", value))
        for value in ("lt2022", "ge2023", "eq2022", "eb2023", "sa2021-12-31"):
            self.add("date:open", "CarePlan", ("date", value))
        for value in ("2019-05-05", "2019-06", "eq2019", "gt2019-06-06", "lt2019-05-05T10:00:00Z",
                      "ge2019-05-05T10:00:00Z", "2018-07-14T12:00:00Z", "2018-07-14", "eq2021", "2021-12-25",
                      "2021-12-24", "le2022-01-01T00:00:00Z"):
            self.add("date:extras", "Observation", ("date", value))
        for value in ("2018-07-14T10:00:00Z", "2018-07-14T12:00:00+02:00", "gt2018-07-14T10:00:00Z", "2018-07"):
            self.add("date:extras", "Observation", ("value-date", value))
        for value in ("2021-02-03", "2021-02-02", "2021-02-03T02:05:06Z", "eb2021-02-03T02:05:06Z"):
            self.add("date:extras", "Patient", ("death-date", value))
        for value in ("1975", "1975-06", "1975-06-15", "ne1975-06-15", "sa1975-05", "eb1975-07", "2000-02-29",
                      "gt1990", "ge1990"):
            self.add("date:extras", "Patient", ("birthdate", value))
        self.add("date:extras", "CarePlan", ("activity-date", "2022-01-15"))

    def quantity_cases(self) -> None:
        for n in range(22):
            code = ("value-quantity", "component-value-quantity", "combo-value-quantity")[n % 3]
            found = self.pick("Observation", code, lambda v: isinstance(v, dict) and "value" in v)
            assert found is not None
            q = found[1]
            value = Decimal(q["value"])
            places = self.rng.choice([0, 1, 2])
            prefix = DATE_PREFIXES[n % len(DATE_PREFIXES)]
            number = number_text(value, places)
            unit = self.rng.choice(["", f"|{q.get('system')}|{q.get('code')}", f"||{q.get('code')}",
                                    f"||{q.get('unit')}", "||kg"])
            self.add("quantity", "Observation", (code, ("" if prefix == "eq" and n % 2 else prefix) + number + unit))
        for n in range(8):
            found = self.pick("Observation", "value-quantity",
                              lambda v: isinstance(v, dict) and len(str(v.get("value", ""))) > 12)
            assert found is not None
            digits = str(found[1]["value"])
            self.add("quantity:precision", "Observation",
                     ("value-quantity", ("", "ne", "ge", "le", "gt", "lt", "sa", "eb")[n] + digits))
        for value in ("72.5", "72.50", "72", "73", "eq72.5|http://unitsofmeasure.org|kg", "72.5||kg", "72.5||kilogram",
                      "72.5|http://unitsofmeasure.org|kilogram", "gt72.49||kg", "0.001", "le0.001", "lt0.001",
                      "0.0010", "1e-3", "ge1e2", "sa72.5", "eb72.6"):
            self.add("quantity:extras", "Observation", ("value-quantity", value))
        self.add("quantity:extras", "Observation", ("component-value-quantity", "150"))
        self.add("quantity:extras", "Observation", ("component-value-quantity", "gt149|http://unitsofmeasure.org|mm[Hg]"))
        for value in ("1250.5", "1250.50|urn:iso:std:iso:4217|EUR", "gt1000||EUR", "1250.5|urn:iso:std:iso:4217|USD",
                      "lt100", "le99.99||USD", "ne99.99"):
            self.add("quantity:money", "Invoice", ("totalgross", value))
        self.add("quantity:money", "Invoice", ("totalnet", "1000"))
        self.add("quantity:duration", "Encounter", ("length", "45|http://unitsofmeasure.org|min"))
        self.add("quantity:duration", "Encounter", ("length", "gt30"))
        for value in ("0.25", "0.3", "0.7", "0.70", "gt0.5", "lt0.25", "le0.25", "ge12.5", "100", "100.0", "99.6",
                      "99", "eb12.5", "sa99", "ne0.25", "12", "13", "0.2,100",
                      # decimal, not binary floating point: 0.35 is on the edge of 0.3 and 0.4
                      "0.4", "0.35", "0.350", "gt0.29999999999999999", "lt0.30000000000000001", "ge0.3", "gt0.3",
                      "le0.3", "lt0.3", "ne0.3", "eq0.30", "0.2999999999", "gt0.34999999999999999999",
                      "lt0.35000000000000000001", "le0.35", "sa0.35", "eb0.35"):
            self.add("number", "RiskAssessment", ("probability", value))

    def reference_cases(self) -> None:
        plan = [("Observation", "subject", "Patient"), ("Observation", "patient", None),
                ("Observation", "encounter", None), ("Condition", "subject", "Patient"),
                ("Condition", "encounter", None), ("Encounter", "subject", "Patient"),
                ("Encounter", "participant", "Practitioner"), ("Encounter", "service-provider", None),
                ("Procedure", "subject", "Patient"), ("MedicationRequest", "requester", "Practitioner"),
                ("Immunization", "patient", None), ("DiagnosticReport", "result", None),
                ("DiagnosticReport", "encounter", None), ("Claim", "provider", "Organization"),
                ("Claim", "patient", None), ("ExplanationOfBenefit", "care-team", "Practitioner"),
                ("ExplanationOfBenefit", "claim", None), ("CarePlan", "goal", None), ("CarePlan", "condition", None),
                ("AllergyIntolerance", "patient", None), ("Patient", "organization", None),
                ("Observation", "performer", "Organization")]
        for res_type, code, type_modifier in plan:
            targets = self.refs(res_type, code)
            t, i = self.rng.choice(targets)
            form = self.rng.choice(["typed", "bare", "absolute"])
            value = {"typed": f"{t}/{i}", "bare": i, "absolute": f"{BASE_URL}/{t}/{i}"}[form]
            self.add("reference", res_type, (code, value))
            if type_modifier:
                self.add("reference:type", res_type, (f"{code}:{type_modifier}", i))
            if len(targets) > 1:
                (t1, i1), (_, i2) = self.rng.sample(targets, 2)
                self.add("reference:or", res_type, (code, f"{t1}/{i1},{i2}"))
        pid = self.rng.choice(self.refs("Observation", "subject"))[1]
        self.add("reference:wrong-type", "Observation", ("subject", f"Practitioner/{pid}"))
        self.add("reference:wrong-type", "Observation", ("subject:Group", pid))
        self.add("reference:identifier", "Observation", ("performer:identifier", "http://example.org/staff|S-1"))
        self.add("reference:identifier", "Observation", ("performer:identifier", "S-1"))
        self.add("reference:identifier", "Observation", ("performer:identifier", "http://example.org/staff|S-2"))

    def uri_cases(self) -> None:
        base = "http://example.org/fhir/ValueSet/oracle-colours"
        for key, value in [("url", base), ("url", base + "/extended"), ("url", "http://example.org/fhir/ValueSet"),
                           ("url:below", "http://example.org/fhir/ValueSet"), ("url:below", base),
                           ("url:above", base + "/extended/v2"), ("url:above", base),
                           ("url", "urn:uuid:5b9c8f8e-7a43-4bd5-9bd3-1f4a2b2c3d4e"),
                           ("reference", "http://example.org/fhir/CodeSystem/colours"),
                           ("url", base.upper())]:
            self.add("uri", "ValueSet", (key, value))
        self.add("uri", "Patient", ("_profile", "http://example.org/fhir/StructureDefinition/oracle-patient"))
        self.add("uri", "Observation", ("_profile", "http://example.org/fhir/StructureDefinition/oracle-obs"))
        self.add("uri", "Patient", ("_source", "http://example.org/source#oracle"))
        self.add("uri", "Patient", ("_source:below", "http://example.org/source"))

    def missing_cases(self) -> None:
        for res_type, code in [("Condition", "abatement-date"), ("Observation", "value-quantity"),
                               ("Observation", "value-concept"), ("Observation", "component-code"),
                               ("Encounter", "reason-code"), ("Patient", "death-date"), ("Patient", "organization"),
                               ("Procedure", "reason-reference"), ("CarePlan", "goal"), ("Patient", "family"),
                               ("Observation", "encounter"), ("Encounter", "length"), ("Patient", "_tag"),
                               ("Patient", "address-postalcode"), ("CarePlan", "date"), ("Observation", "_profile"),
                               ("Observation", "value-string")]:
            for flag in ("true", "false"):
                self.add("missing", res_type, (f"{code}:missing", flag))

    def meta_cases(self) -> None:
        for res_type in ("Patient", "Observation", "Organization", "Claim"):
            ids = self.oracle.ids(res_type)
            a, b, c = self.rng.sample(ids, 3)
            self.add("_id", res_type, ("_id", a))
            self.add("_id", res_type, ("_id", f"{a},{b},no-such-id"))
            self.add("_id", res_type, ("_id", a), ("_id", c))
        for n, res_type in enumerate(("Patient", "Observation", "Encounter", "Practitioner", "Condition", "Claim")):
            r = self.oracle.by_type[res_type][self.rng.choice(self.oracle.ids(res_type))]
            stamp = r["meta"]["lastUpdated"]
            prefix = DATE_PREFIXES[(2 * n) % len(DATE_PREFIXES)]
            self.add("_lastUpdated", res_type, ("_lastUpdated", f"{prefix}{stamp}"))
            lo = value_ranges(stamp)[0][0]
            self.add("_lastUpdated", res_type,
                     ("_lastUpdated", f"{DATE_PREFIXES[(2 * n + 1) % 8]}{render_instant(lo, 'second', 60)}"))
        self.add("_lastUpdated", "Patient", ("_lastUpdated", "gt2000"))
        self.add("_lastUpdated", "Patient", ("_lastUpdated", "lt2000"))
        for res_type, value in [("Patient", "https://smarthealthit.org/tags|synthea-5-2019"),
                                ("Organization", "synthea-5-2019"), ("Patient", "oracle"), ("Patient", "ORACLE"),
                                ("Observation", "http://example.org/tags|oracle"), ("Patient", "|no-system"),
                                ("Patient", "http://example.org/tags|"), ("Patient", "no-system")]:
            self.add("_tag", res_type, ("_tag", value))
        self.add("_tag", "Patient", ("_tag:not", "https://smarthealthit.org/tags|synthea-5-2019"))
        self.add("_security", "Patient", ("_security", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"))
        self.add("_security", "Patient", ("_security", "N"))

    def composite_cases(self) -> None:
        for n in range(16):
            code = ("code-value-quantity", "component-code-value-quantity", "combo-code-value-quantity",
                    "code-value-concept")[n % 4]
            found = self.pick("Observation", code)
            assert found is not None
            node = found[1]
            param = self.oracle.registry.param("Observation", code)
            assert param is not None
            codes = [p for v in param.components[0].evaluate(node) for p in token_pairs(v)]
            values = param.components[1].evaluate(node)
            if not codes or not values:
                continue
            system, c = self.rng.choice(codes)
            first = f"{system}|{c}" if system and n % 2 else c
            if code == "code-value-concept":
                _, vc = self.rng.choice(token_pairs(values[0]))
                second = vc
            else:
                prefix = DATE_PREFIXES[n % 8]
                second = prefix + number_text(Decimal(values[0]["value"]), self.rng.choice([0, 1]))
            self.add("composite", "Observation", (code, f"{first}${second}"))
        # the two parts must hold in the same component: systolic 150 and diastolic 95 (extras)
        for code, value in [("component-code-value-quantity", "8480-6$150"),
                            ("component-code-value-quantity", "8480-6$95"),
                            ("component-code-value-quantity", "http://loinc.org|8462-4$95|http://unitsofmeasure.org|mm[Hg]"),
                            ("combo-code-value-quantity", "8462-4$lt100,8480-6$gt200"),
                            ("code-value-quantity", "29463-7$72.5"), ("code-value-quantity", "29463-7$70"),
                            ("code-value-concept", "http://loinc.org|94531-1$http://snomed.info/sct|260385009"),
                            ("code-value-date", "21112-8$2018-07-14"), ("code-value-date", "21112-8$gt2019"),
                            ("code-value-string", "value-string-none$x")]:
            self.add("composite", "Observation", (code, value))

    def chain_cases(self) -> None:
        def first_family(res_type: str, i: str) -> str | None:
            for v in self.oracle.values(res_type, "family", i):
                return str(v)
            return None

        for _ in range(5):
            _, pid = self.rng.choice(self.refs("Observation", "patient"))
            fam = first_family("Patient", pid)
            assert fam is not None
            self.add("chain", "Observation", (self.rng.choice(["patient.family", "subject:Patient.family",
                                                               "subject:Patient.name"]), esc(fam[:4])))
        for res_type, key, target, code in [
            ("Encounter", "service-provider.name", "Organization", "name"),
            ("Claim", "provider.name", "Organization", "name"),
            ("Encounter", "participant:Practitioner.family", "Practitioner", "family"),
            ("MedicationRequest", "requester:Practitioner.given", "Practitioner", "given"),
            ("Observation", "encounter.class", "Encounter", "class"),
            ("Observation", "encounter.type", "Encounter", "type"),
            ("Condition", "subject:Patient.gender", "Patient", "gender"),
            ("Condition", "encounter.date", "Encounter", "date"),
            ("DiagnosticReport", "result.code", "Observation", "code"),
            ("ExplanationOfBenefit", "claim.status", "Claim", "status"),
            ("Immunization", "patient.birthdate", "Patient", "birthdate"),
            ("Observation", "patient.address-city", "Patient", "address-city"),
        ]:
            found = self.pick_through(res_type, key, target, code)
            assert found is not None, (target, code)
            v = found
            if isinstance(v, str) and code == "birthdate":
                value = "ge" + v[:4]
            elif code in ("date",):
                lo = value_ranges(v)[0][0]
                value = "le" + render_instant(lo, "day")
            elif isinstance(v, str):
                value = esc(v if code in ("status", "gender") else v[:5])
            elif isinstance(v, dict) and "family" in v:
                value = str(v["family"])[:3]
            else:
                pairs = token_pairs(v)
                value = self.rng.choice(pairs)[1] or ""
            self.add("chain", res_type, (key, value))
        # depth 2 and 3
        org = self.pick_through("Encounter", "service-provider", "Organization", "name")
        assert isinstance(org, str)
        self.add("chain:2", "Observation", ("encounter.service-provider.name", esc(org[:6])))
        self.add("chain:2", "Claim", ("patient.organization.name", "smith"))
        self.add("chain:2", "Observation", ("encounter.subject:Patient.gender", "female"))
        self.add("chain:3", "DiagnosticReport", ("result.encounter.service-provider.name", esc(org[:6])))
        self.add("chain:3", "ExplanationOfBenefit", ("claim.encounter.subject:Patient.birthdate", "lt1980"))
        self.add("chain:3", "Observation", ("patient.organization.address-city", "dussel"))
        self.add("chain:modifier", "Observation", ("patient.family:exact", "Müller"))
        self.add("chain:modifier", "Observation", ("patient.name:contains", "ller"))
        self.add("chain:modifier", "Observation", ("encounter.class:not", "AMB"))
        self.add("chain:modifier", "Observation", ("patient.gender:not", "male"))
        self.add("chain:modifier", "Condition", ("subject:Patient.death-date:missing", "false"))
        self.add("chain:modifier", "Observation", ("patient.identifier", "urn:oid:1.2.3|MRN-0001"))
        some_patient = self.rng.choice(self.refs("Observation", "patient"))[1]
        self.add("chain:modifier", "Observation", ("patient._id", some_patient))
        self.add("chain:modifier", "Observation", ("patient._tag", "oracle"))
        self.add("chain", "Observation", ("patient.family", "nobody-has-this-name"))
        # a reference that may point at several types, without a :Type: every type with the parameter
        some_family = self.pick_through("DiagnosticReport", "subject", "Patient", "family")
        self.add("chain:untyped", "DiagnosticReport", ("subject.name", esc(str(some_family)[:4])))
        self.add("chain:untyped", "Observation", ("subject.family", esc(str(some_family)[:4])))
        self.add("chain:untyped", "Observation", ("subject.name", "müll"))
        self.add("chain", "Observation", ("subject:Patient.name", "müller"), ("code", "29463-7"))

    def reverse_chain_cases(self) -> None:
        for res_type, key, src, code in [
            ("Patient", "_has:Observation:patient:code", "Observation", "code"),
            ("Patient", "_has:Condition:subject:code", "Condition", "code"),
            ("Patient", "_has:Immunization:patient:vaccine-code", "Immunization", "vaccine-code"),
            ("Patient", "_has:MedicationRequest:subject:code", "MedicationRequest", "code"),
            ("Encounter", "_has:Observation:encounter:code", "Observation", "code"),
            ("Encounter", "_has:Procedure:encounter:code", "Procedure", "code"),
            ("Organization", "_has:Encounter:service-provider:class", "Encounter", "class"),
            ("Practitioner", "_has:Encounter:participant:type", "Encounter", "type"),
            ("Patient", "_has:AllergyIntolerance:patient:criticality", "AllergyIntolerance", "criticality"),
            ("Claim", "_has:ExplanationOfBenefit:claim:status", "ExplanationOfBenefit", "status"),
            ("Patient", "_has:CarePlan:subject:category", "CarePlan", "category"),
        ]:
            for _ in range(2):
                system, c = self.rng.choice(self.codes(src, code))
                self.add("_has", res_type, (key, f"{system}|{c}" if system and self.rng.random() < 0.5 else c))
        self.add("_has", "Patient", ("_has:Observation:patient:value-quantity", "gt150"))
        self.add("_has", "Patient", ("_has:Observation:patient:date", "lt1990"))
        self.add("_has", "Patient", ("_has:Observation:patient:code", "no-such-code"))
        self.add("_has", "Patient", ("_has:Observation:patient:code", "8302-2"),
                 ("_has:Condition:subject:code", self.rng.choice(self.codes("Condition", "code"))[1]))
        self.add("_has", "Organization", ("_has:Patient:organization:name", "muller"))
        self.add("_has:modifier", "Patient", ("_has:Observation:patient:code:not", "8302-2"))
        condition = self.pick("Condition", "code", lambda v: isinstance(v, dict) and "text" in v)
        assert condition is not None
        text = esc(condition[1]["text"][:6].lower())
        self.add("_has:modifier", "Patient", ("_has:Condition:subject:code:text", text))
        self.add("_has:modifier", "Patient", ("_has:Observation:patient:value-quantity:missing", "false"))
        klass = self.pick_through("Observation", "encounter", "Encounter", "class")
        self.add("_has:chain", "Patient", ("_has:Observation:patient:encounter.class", klass["code"]))
        self.add("_has:chain", "Patient", ("_has:Observation:patient:encounter.class", "EMER"))
        self.add("_has:nested", "Patient", ("_has:Encounter:patient:_has:Observation:encounter:code",
                                            self.rng.choice(self.codes("Observation", "code"))[1]))
        self.add("_has:nested", "Practitioner", ("_has:Encounter:participant:_has:Condition:encounter:code",
                                                 self.rng.choice(self.codes("Condition", "code"))[1]))
        self.add("_has", "Patient", ("_has:RiskAssessment:subject:probability", "gt0.5"))

    def combination_cases(self) -> None:
        for _ in range(10):
            _, pid = self.rng.choice(self.refs("Observation", "patient"))
            c = self.rng.choice(self.codes("Observation", "code"))[1]
            self.add("and", "Observation", ("patient", pid), ("code", c))
        for _ in range(5):
            _, pid = self.rng.choice(self.refs("Encounter", "subject"))
            self.add("and", "Encounter", ("subject", f"Patient/{pid}"), ("date", f"ge{self.rng.randint(1990, 2019)}"))
        for _ in range(5):
            _, pid = self.rng.choice(self.refs("Condition", "subject"))
            self.add("and", "Condition", ("subject", pid), ("clinical-status", self.rng.choice(["active", "resolved"])))
        self.add("and", "Patient", ("gender", "female"), ("birthdate", "lt1980"), ("address-state", "mass"))
        self.add("and", "Observation", ("category", "vital-signs"), ("value-quantity", "gt100"), ("date", "ge2015"))
        self.add("and", "Observation", ("code", "8302-2"), ("code", "29463-7"))
        self.add("and", "Observation", ("status", "final,amended"), ("status:not", "final"))

    def nomatch_cases(self) -> None:
        for res_type, key, value in [
            ("Patient", "family", "zzqxv"), ("Patient", "birthdate", "2099"), ("Patient", "gender", "unknownish"),
            ("Observation", "code", "http://loinc.org|0000-0"), ("Observation", "code", "http://nowhere.example|"),
            ("Observation", "subject", "Patient/does-not-exist"), ("Observation", "value-quantity", "gt1e9"),
            ("Encounter", "date", "lt1800"), ("Condition", "code", "|386661006"), ("Claim", "_id", "nope"),
            ("Organization", "name:exact", "baystate"), ("Practitioner", "identifier", "urn:x|70"),
            ("Immunization", "date", "sa2100"), ("Procedure", "code:text", "qqqq"),
            ("CarePlan", "category", "HTTP://SNOMED.INFO/SCT|"), ("AllergyIntolerance", "_lastUpdated", "lt1990"),
            ("Goal", "_tag", "nope"), ("DiagnosticReport", "result", "Observation/nope"),
        ]:
            self.add("nomatch", res_type, (key, value))

    def unknown_cases(self) -> None:
        self.add("lenient", "Patient", ("not-a-parameter", "1"), ("gender", "female"))
        self.add("lenient", "Observation", ("x-unknown", "y"), ("status", "final"), ("code", "8302-2"))
        self.add("lenient", "Claim", ("foo:bar", "baz"), ("use", "claim"))

    def sort_cases(self) -> None:
        _, pid = self.rng.choice(self.refs("Observation", "patient"))
        for res_type, params, key in [
            ("Patient", [], "birthdate"), ("Patient", [], "-birthdate"), ("Patient", [], "family"),
            ("Practitioner", [("address-state", "MA")], "-family"),
            ("Observation", [("code", "8302-2")], "date"), ("Observation", [("code", "8302-2")], "-date"),
            ("Observation", [("code", "8302-2")], "value-quantity"),
            ("Observation", [("code", "29463-7")], "-value-quantity"),
            ("Encounter", [("subject", pid)], "date"), ("Encounter", [("subject", pid)], "-date"),
            ("Condition", [], "onset-date"), ("Condition", [], "-abatement-date"),
            ("CarePlan", [], "date"), ("CarePlan", [], "-date"), ("Immunization", [("patient", pid)], "-date"),
            ("Claim", [("patient", pid)], "created"), ("Organization", [], "_lastUpdated"),
            ("Observation", [("patient", pid)], "-_lastUpdated"), ("RiskAssessment", [], "probability"),
            ("RiskAssessment", [], "-probability"), ("Organization", [("address-state", "MA")], "_id"),
            ("Procedure", [("subject", pid)], "-_id"), ("Practitioner", [], "given"),
            ("MedicationRequest", [], "-authoredon"), ("Observation", [("code", "29463-7")], "-date"),
        ]:
            self.add("sort", res_type, *params, ("_sort", key))

    def generate(self) -> list[Case]:
        for step in (self.string_cases, self.token_cases, self.date_cases, self.quantity_cases,
                     self.reference_cases, self.uri_cases, self.missing_cases, self.meta_cases,
                     self.composite_cases, self.chain_cases, self.reverse_chain_cases, self.combination_cases,
                     self.nomatch_cases, self.unknown_cases, self.sort_cases):
            step()
        for n, case in enumerate(self.cases):
            case.post = n % 7 == 3
            case.strict = n % 11 == 5 and case.feature != "lenient"
            case.count = 7 if n % 13 == 6 else 1000
            case.summary = n % 17 == 8
        self.include_cases()
        return self.cases

    def include_cases(self) -> None:
        """_include and _revinclude: the matches are unchanged and the included entries are the oracle's."""
        _, pid = self.rng.choice(self.refs("Observation", "patient"))
        _, eid = self.rng.choice(self.refs("Observation", "encounter"))
        for res_type, params, include in [
            ("Observation", [("patient", pid), ("code", "8302-2")], ("_include", "Observation:patient")),
            ("Observation", [("encounter", eid)], ("_include", "Observation:encounter")),
            ("Observation", [("encounter", eid)], ("_include", "Observation:subject:Patient")),
            ("Encounter", [("subject", pid)], ("_include", "Encounter:participant")),
            ("Encounter", [("subject", pid)], ("_include", "Encounter:service-provider")),
            ("Claim", [("patient", pid)], ("_include", "Claim:provider")),
            ("DiagnosticReport", [("subject", pid)], ("_include", "DiagnosticReport:result")),
            ("Patient", [("_id", pid)], ("_revinclude", "Condition:subject")),
            ("Patient", [("_id", pid)], ("_revinclude", "Immunization:patient")),
            ("Patient", [("family", "m")], ("_revinclude", "RiskAssessment:subject")),
            ("Encounter", [("_id", eid)], ("_revinclude", "Observation:encounter")),
            ("Organization", [("name", "smith")], ("_revinclude", "Patient:organization")),
            ("Patient", [("gender", "female")], ("_include", "Patient:organization")),
        ]:
            self.cases.append(Case("include", res_type, params, include=include))


# -- running them ---------------------------------------------------------------------------------

@dataclass
class Answer:
    status: int
    ids: list[str] = field(default_factory=list)  # the matches, in the order returned, over all pages
    included: list[str] = field(default_factory=list)  # Type/id of entries with search.mode include
    totals: list[int] = field(default_factory=list)  # Bundle.total of each page that had one
    error: str = ""


def send(client: TestClient, case: Case, params: list[tuple[str, str]]) -> Any:
    headers = {"Prefer": "handling=strict"} if case.strict else {}
    if case.post:
        return client.post(f"/fhir/{case.res_type}/_search", content=urlencode(params),
                           headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    return client.get(f"/fhir/{case.res_type}?{urlencode(params)}", headers=headers)


def run_search(client: TestClient, case: Case) -> Answer:
    """Run the search and follow its `next` links."""
    params = [*case.params, *([case.include] if case.include else []), ("_count", str(case.count))]
    r = send(client, case, params)
    answer = Answer(r.status_code)
    for _ in range(300):
        if r.status_code != 200:
            answer.status, answer.error = r.status_code, r.text[:400]
            return answer
        bundle = r.json()
        if isinstance(bundle.get("total"), int):
            answer.totals.append(bundle["total"])
        for entry in bundle.get("entry", []):
            mode = entry.get("search", {}).get("mode", "match")
            if mode == "match":
                answer.ids.append(entry["resource"]["id"])
            elif mode == "include":
                answer.included.append(f"{entry['resource']['resourceType']}/{entry['resource']['id']}")
        nxt = [link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"]
        if not nxt:
            return answer
        r = client.get(nxt[0])
    answer.status, answer.error = 599, "more than 300 pages"
    return answer


def summary_count(client: TestClient, case: Case) -> tuple[int, Any]:
    r = send(client, case, [*case.params, ("_summary", "count")])
    return r.status_code, r.json() if r.status_code == 200 else r.text[:300]


def expected_includes(oracle: Oracle, case: Case, matches: set[str]) -> set[str]:
    assert case.include is not None
    kind, spec = case.include
    source, code, *rest = spec.split(":")
    target = rest[0] if rest else None
    out = set()
    if kind == "_include":
        for i in matches:
            for v in oracle.values(source, code, i):
                t = reference_target(v, oracle.base)
                if t and target in (None, t[0]) and t[1] in oracle.by_type.get(t[0], {}):
                    out.add(f"{t[0]}/{t[1]}")
    else:
        for j in oracle.ids(source):
            for v in oracle.values(source, code, j):
                t = reference_target(v, oracle.base)
                if t and t[0] == case.res_type and t[1] in matches:
                    out.add(f"{source}/{j}")
    return out - {f"{case.res_type}/{i}" for i in matches}


def describe(oracle: Oracle, case: Case, ids: list[str]) -> str:
    """The ids with what the oracle sees in them for the parameters searched (for reading a failure)."""
    lines = []
    for i in ids[:3]:
        seen = {}
        for key, _ in case.params:
            name = key.split(":", 1)[0].split(".", 1)[0]
            if name.startswith("_has") or name in ("_sort", "_count"):
                continue
            param = oracle.registry.param(case.res_type, name)
            if param is None or param.evaluate is None:
                continue
            vals = oracle.values(case.res_type, name, i)
            if param.type == "composite":  # each element as its components' values
                vals = [[c.evaluate(node) for c in param.components] for node in vals]
            seen[name] = vals
        lines.append(f"      {case.res_type}/{i}: {str(seen)[:300]}")
    if len(ids) > 3:
        lines.append(f"      ... and {len(ids) - 3} more")
    return "\n".join(lines)


def check_order(oracle: Oracle, case: Case, ids: list[str]) -> str | None:
    key = dict(case.params)["_sort"]
    descending = key.startswith("-")
    code = key.lstrip("-")
    keys = [oracle.sort_key(case.res_type, code, i, descending) for i in ids]
    for n in range(1, len(keys)):
        a, b = keys[n - 1], keys[n]
        if a is None and b is not None:
            return f"position {n}: a resource without {code} comes before one with ({ids[n]}: {b})"
        if a is not None and b is not None and (b > a if descending else b < a):
            return f"position {n}: {ids[n - 1]} ({a}) then {ids[n]} ({b})"
    return None


def check_coverage(cases: list[Case], expected: list[set[str]]) -> None:
    """The generator itself: enough searches, every feature and type, some matching nothing, most something."""
    assert len(cases) >= MIN_SEARCHES
    features = {c.feature.split(":")[0] for c in cases}
    assert {"string", "token", "date", "quantity", "number", "reference", "uri", "missing", "_id", "_lastUpdated",
            "_tag", "_security", "composite", "chain", "_has", "and", "nomatch", "sort"} <= features
    assert sum(not e for e in expected) >= 15
    assert sum(bool(e) for e in expected) >= 200
    windows = [bool(e) for c, e in zip(cases, expected, strict=True) if c.feature == "date:window"]
    assert len(windows) >= 25, len(windows)
    assert sum(windows) >= 20, sum(windows)  # most windows hold a match
    assert {"Patient", "Observation", "Condition", "Encounter", "Procedure", "MedicationRequest", "Immunization",
            "DiagnosticReport", "Claim", "ExplanationOfBenefit", "CarePlan", "AllergyIntolerance", "Organization",
            "Practitioner"} <= {c.res_type for c in cases}


# SQLite has no decimal type: its index compares numbers as binary floating point, which holds about
# 15 significant digits (a documented limitation, docs/api.md). PostgreSQL's NUMERIC keeps them all,
# so searches with more digits than that are checked there only.
FLOAT_DIGITS = 15


def beyond_float(case: Case) -> bool:
    if case.feature.split(":")[0] not in ("number", "quantity"):
        return False
    for _, raw in case.params:
        for value in raw.split(","):
            number = value[2:] if value[:2].isalpha() else value
            mantissa = re.split(r"[eE]", number.split("|")[0])[0]
            if len(re.sub(r"\D", "", mantissa).lstrip("0")) > FLOAT_DIGITS:
                return True
    return False


def test_searches_agree_with_the_oracle(world: World) -> None:
    cases = Generator(world.oracle).generate() + world.stale
    assert [c.params for c in Generator(world.oracle).generate() + world.stale] == [c.params for c in cases]
    expected_all = [world.oracle.search(c.res_type, c.params) for c in cases]
    check_coverage(cases, expected_all)
    failures: list[tuple[str, str]] = []
    counted: Counter[str] = Counter()
    for case, expected in zip(cases, expected_all, strict=True):
        if world.backend == "sqlite" and beyond_float(case):
            counted["skipped on SQLite: beyond float precision"] += 1
            continue
        counted[case.feature.split(":")[0]] += 1
        answer = run_search(world.client, case)
        got, how = answer.ids, case.how()
        if answer.status != 200:
            failures.append((case.feature, f"{case}  [{how}]\n    status {answer.status}: {answer.error}\n"
                                           f"    oracle expects {len(expected)} matches"))
            continue
        problems = []
        if any(t != len(expected) for t in answer.totals):
            problems.append(f"    Bundle.total {sorted(set(answer.totals))} for {len(expected)} matches")
        if case.summary:
            status, body = summary_count(world.client, case)
            matches = [] if status != 200 else [e for e in body.get("entry", [])
                                                if e.get("search", {}).get("mode", "match") == "match"]
            if status != 200 or body.get("total") != len(expected) or matches:
                problems.append(f"    _summary=count: {status} total {body.get('total') if status == 200 else body}")
        if case.include:
            want = expected_includes(world.oracle, case, expected)
            if sorted(answer.included) != sorted(want):
                problems.append(f"    included: {len(answer.included)} entries ({len(set(answer.included))} distinct); "
                                f"only on the server: {sorted(set(answer.included) - want)[:4]}; "
                                f"only in the oracle: {sorted(want - set(answer.included))[:4]}")
        if len(got) != len(set(got)):
            problems.append(f"    duplicates: {sorted(k for k, v in Counter(got).items() if v > 1)[:5]}")
        only_server = sorted(set(got) - expected)
        only_oracle = sorted(expected - set(got))
        if only_server:
            problems.append(f"    {len(only_server)} only on the server:\n{describe(world.oracle, case, only_server)}")
        if only_oracle:
            problems.append(f"    {len(only_oracle)} only in the oracle:\n{describe(world.oracle, case, only_oracle)}")
        if not problems and any(k == "_sort" for k, _ in case.params):
            wrong = check_order(world.oracle, case, got)
            if wrong:
                problems.append(f"    order: {wrong}")
        if problems:
            failures.append((case.feature, f"{case}  [{how}]  ({len(expected)} expected, {len(got)} returned)\n"
                             + "\n".join(problems)))
    for case in cases:
        if case.feature == "lenient":
            strict = Case(case.feature, case.res_type, case.params, strict=True)
            answer = run_search(world.client, strict)
            if answer.status != 400:
                failures.append(("lenient", f"{strict}  [{strict.how()}]\n    an unknown parameter under "
                                            f"handling=strict gave {answer.status}, not 400"))
    if failures:
        by_feature = dict(sorted(Counter(f.split(":")[0] for f, _ in failures).items()))
        head = (f"{len(failures)} of {len(cases)} searches disagree with the oracle on {world.backend} "
                f"(failing by feature: {by_feature}; searches by feature: {dict(sorted(counted.items()))})")
        pytest.fail(head + "\n\n" + "\n".join(f"[{f}] {text}" for f, text in failures), pytrace=False)
