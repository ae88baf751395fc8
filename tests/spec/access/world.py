"""A small world for the access spec tests: two practices, two trusts, an ambulance service, patients
A and B, and the people who look at their records.

Everything is written the way feeds write it: by each organisation's own system (a system caller
with that organisation), so every resource knows its source organisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sharedcare.access.context import Caller
from sharedcare.access.labels import CodeSets
from sharedcare.fhir.search import query as search_query
from sharedcare.storage.repository import Page, Repository, Stored

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
A_NHS, B_NHS = "9000000009", "9000000017"
# Sensitive code sets of the tests' own, with codes of a test system (the packaged sets are checked in
# test_sensitive_codes.py).
TEST_CODES = "https://sharedcare.example/test-codes"
IVF = (TEST_CODES, "assisted-conception-1")
SETS = CodeSets({IVF: "assisted-conception", (TEST_CODES, "sexual-health-1"): "sexual-health"})
ORGS = {"GP1": "gp-one", "GP2": "gp-two", "TR1": "trust-one", "TR2": "trust-two", "AMB": "ambulance"}


def source(org: str) -> Caller:
    """An organisation's own system, as its feed writes."""
    return Caller(kind="system", agent_id=f"client:{org.lower()}", organisation=org, scopes=("system/*.cruds",))


def staff(org: str, role: str = "R8000", who: str = "clinician", aal: int | None = 3) -> Caller:
    """A member of staff in one role profile, signed in at `aal` (AAL3: a smartcard, as most are)."""
    return Caller(kind="user", agent_id=f"user:{who}@{org.lower()}", role=role, organisation=org,
                  scopes=("user/*.cruds",), aal=aal)


def patient(nhs_number: str) -> Caller:
    return Caller(kind="patient", agent_id=f"patient:{nhs_number}", nhs_number=nhs_number,
                  scopes=("patient/*.rs",))


NODE = Caller(kind="system", agent_id="system:test", scopes=("system/*.cruds",))


def ref(res_type: str, res_id: str) -> dict[str, str]:
    return {"reference": f"{res_type}/{res_id}"}


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


@dataclass
class World:
    repo: Repository
    ids: dict[str, str] = field(default_factory=dict)

    def write(self, caller: Caller, body: dict[str, Any], name: str | None = None) -> str:
        with self.repo.unit(caller, "create", body["resourceType"]) as unit:
            if "id" in body:  # update as create: the directory's resources keep the ids others refer to
                res_id = unit.write(body["resourceType"], body["id"], body, method="PUT").stored.res_id
            else:
                res_id = unit.create(body).stored.res_id
        if name:
            self.ids[name] = res_id
        return res_id

    def read(self, caller: Caller, name: str, res_type: str | None = None) -> Stored:
        res_type = res_type or name.split(":")[0]
        return self.repo.read(caller, res_type, self.ids[name])

    def search(self, caller: Caller, res_type: str, *params: tuple[str, str]) -> Page:
        q = search_query.parse(res_type, [*params, ("_total", "accurate")], default_count=100, max_count=1000)
        return self.repo.search(caller, q, q.canonical())

    def found(self, caller: Caller, res_type: str, *params: tuple[str, str]) -> set[str]:
        """The names of what a search finds (ids the world did not name are returned as ids)."""
        names = {v: k for k, v in self.ids.items()}
        page = self.search(caller, res_type, *params)
        assert page.total == len(page.items), "every test search fits one page; the total must agree"
        return {names.get(s.res_id, s.res_id) for s in page.items}


def build(repo: Repository) -> World:
    """Patients A (registered at GP1) and B (registered at GP2), each with GP records; A has a
    sensitive and a source-confidential item at GP1, and a TR1 record of its own."""
    w = World(repo)
    for code, key in ORGS.items():
        w.write(source(code), {"resourceType": "Organization", "id": key,
                               "identifier": [{"system": ODS, "value": code}], "name": code}, f"Organization:{code}")
    w.write(source("GP1"), {"resourceType": "Patient", "identifier": [{"system": NHS, "value": A_NHS}],
                            "name": [{"family": "Able", "given": ["Ada"]}], "gender": "female",
                            "address": [{"postalCode": "E1 6AN"}], "telecom": [{"system": "phone", "value": "1"}],
                            "generalPractitioner": [ref("Organization", "gp-one")]}, "Patient:A")
    w.write(source("GP2"), {"resourceType": "Patient", "identifier": [{"system": NHS, "value": B_NHS}],
                            "name": [{"family": "Baker", "given": ["Ben"]}], "gender": "male",
                            "generalPractitioner": [ref("Organization", "gp-two")]}, "Patient:B")
    a, b = w.ids["Patient:A"], w.ids["Patient:B"]
    w.write(source("GP1"), observation(a, "8480-6"), "Observation:A-bp")
    w.write(source("GP2"), observation(b, "8480-6"), "Observation:B-bp")
    w.write(source("GP1"), condition(a, IVF), "Condition:A-ivf")
    confidential = observation(a, "72166-2")
    confidential["meta"] = {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                          "code": "R"}]}
    w.write(source("GP1"), confidential, "Observation:A-confidential")
    w.write(source("TR1"), condition(a, (SNOMED, "59621000")), "Condition:A-tr1")
    return w


def observation(patient_id: str, loinc: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "subject": ref("Patient", patient_id), "valueQuantity": {"value": 120, "unit": "mm[Hg]"}}


def condition(patient_id: str, code: tuple[str, str]) -> dict[str, Any]:
    return {"resourceType": "Condition", "subject": ref("Patient", patient_id),
            "code": {"coding": [{"system": code[0], "code": code[1]}]}}


def encounter(patient_id: str, org_id: str, *, status: str = "in-progress", cls: str = "IMP",
              ended: datetime | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Encounter", "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls},
        "subject": ref("Patient", patient_id), "serviceProvider": ref("Organization", org_id)}
    if ended is not None:
        body["period"] = {"start": iso(ended - timedelta(hours=1)), "end": iso(ended)}
    return body
