"""The directory of London's organisations and the people who work in them, as FHIR resources
(Organization, Location, HealthcareService, Practitioner, PractitionerRole) and staff accounts.

Deterministic: the same seed and size give the same resources in the same order, with ids derived
from the seed (uuid5), so feeds generated later can refer to them. Its size is proportional to the
population asked for (one GP practice per about 7,500 people, as in London), bounded below so that
every borough has a practice, a PCN, a council team and a care home.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sharedcare.access.roles import JOB_ROLES, LOCAL_JOB_ROLES, SDS_JOB_ROLE
from sharedcare.synth.geography import BOROUGHS, ICSS, LONDON_POPULATION_K, Borough
from sharedcare.synth.names import FAMILY, GIVEN_FEMALE, GIVEN_MALE
from sharedcare.synth.providers import PROVIDERS, Provider

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
GSS = "https://www.ons.gov.uk/gss-code"  # local authority codes (E09…)
SDS_USER = "https://fhir.nhs.uk/Id/sds-user-id"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
KIND = "https://sharedcare.example/CodeSystem/organisation-kind"
JOB_ROLE = "https://sharedcare.example/CodeSystem/job-role"
# Every synthetic resource carries this security label (HL7 v3 ActReason HTEST, "test health data"),
# so that synthetic data loaded where it should not be is recognisable as such (hazard H-028).
SYNTHETIC = {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST",
                           "display": "test health data"}]}
PEOPLE_PER_PRACTICE = 7_500
PRACTICES_PER_PCN = 5
ICB_CODES = {"NCL": "QMJ", "NEL": "QMF", "NWL": "QRV", "SEL": "QKK", "SWL": "QWE"}  # ODS-style
PRACTICE_PREFIX = {"NCL": "F83", "NEL": "F84", "NWL": "E85", "SEL": "G85", "SWL": "H85"}
# Staff per organisation by kind: (job role code, display, how many).
STAFF = {
    "gp-practice": (("gp", "General practitioner", 3), ("practice-nurse", "Practice nurse", 2),
                    ("receptionist", "Receptionist", 1)),
    "acute": (("consultant", "Consultant", 4), ("ward-nurse", "Ward nurse", 4), ("ed-doctor", "Emergency doctor", 2)),
    "ambulance": (("paramedic", "Paramedic", 8), ("emergency-call-handler", "Emergency call handler", 2)),
    "nhs111": (("111-call-handler", "NHS 111 call handler", 4), ("111-clinician", "NHS 111 clinical adviser", 2)),
    "mental-health": (("psychiatrist", "Psychiatrist", 2), ("mental-health-nurse", "Mental health nurse", 3)),
    "community": (("district-nurse", "District nurse", 3), ("physiotherapist", "Physiotherapist", 1)),
    "council": (("social-worker", "Social worker", 3), ("care-coordinator", "Care co-ordinator", 1)),
    "care-home": (("care-home-manager", "Care home manager", 1),),
}
SERVICES = {
    "gp-practice": "General practice", "acute": "Emergency department", "ambulance": "Emergency ambulance",
    "nhs111": "NHS 111 telephone advice", "mental-health": "Mental health crisis team",
    "community": "District nursing", "council": "Adult social care", "care-home": "Residential care",
}


@dataclass
class StaffAccount:
    username: str
    practitioner_id: str
    role_id: str
    job_role: str
    organisation_code: str


@dataclass
class Directory:
    resources: list[dict[str, Any]] = field(default_factory=list)  # in generation order (see _Builder.add)
    staff: list[StaffAccount] = field(default_factory=list)
    practices: dict[str, list[str]] = field(default_factory=dict)  # borough code -> practice ODS codes
    org_ids: dict[str, str] = field(default_factory=dict)  # organisation code -> Organization id

    def of_type(self, res_type: str) -> Iterator[dict[str, Any]]:
        return (r for r in self.resources if r["resourceType"] == res_type)


def synthetic_meta() -> dict[str, Any]:
    """`meta` of a synthetic resource: the HTEST label, each resource its own copy."""
    return {"security": [dict(label) for label in SYNTHETIC["security"]]}


def gss_code(borough: Borough) -> str:
    if borough.code == "COL":
        return "E09000001"
    others = sorted(b.name for b in BOROUGHS if b.code != "COL")
    return f"E09{others.index(borough.name) + 2:06d}"


class _Builder:
    def __init__(self, people: int, seed: int) -> None:
        self.rng = random.Random(f"directory:{seed}")  # noqa: S311 - reproducible synthetic data, not secrets
        self.ns = uuid.uuid5(uuid.NAMESPACE_URL, f"https://sharedcare.example/synth/{seed}")
        self.people = people
        self.out = Directory()
        self.ids = self.out.org_ids

    def id(self, key: str) -> str:
        return str(uuid.uuid5(self.ns, key))

    def add(self, res: dict[str, Any]) -> None:
        res_type, rid, *rest = res.items()
        self.out.resources.append(dict([res_type, rid, ("meta", synthetic_meta()), *rest]))

    def org(self, code: str, name: str, kind: str, type_code: str, *, system: str = ODS,
            part_of: str | None = None, district: str | None = None) -> str:
        rid = self.ids[code] = self.id(f"Organization/{code}")
        res: dict[str, Any] = {
            "resourceType": "Organization", "id": rid, "identifier": [{"system": system, "value": code}],
            "active": True,
            "type": [{"coding": [{"system": ORG_TYPE, "code": type_code}]},
                     {"coding": [{"system": KIND, "code": kind}]}],
            "name": name,
        }
        if district:
            res["address"] = [{"city": "London", "postalCode": self.postcode(district), "country": "GB"}]
        if part_of:
            res["partOf"] = {"reference": f"Organization/{self.ids[part_of]}"}
        self.add(res)
        return rid

    def postcode(self, district: str) -> str:
        return f"{district} {self.rng.randint(1, 9)}{self.rng.choice('ABDEFGHJLNPQRSTUWXYZ')}" \
               f"{self.rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"

    def site(self, code: str, name: str, borough: Borough, kind: str) -> None:
        loc_id = self.id(f"Location/{code}/{name}")
        self.add({
            "resourceType": "Location", "id": loc_id, "status": "active", "name": name, "mode": "instance",
            "address": {"city": "London", "district": borough.name,
                        "postalCode": self.postcode(self.rng.choice(borough.districts)), "country": "GB"},
            "managingOrganization": {"reference": f"Organization/{self.ids[code]}"},
        })
        self.add({
            "resourceType": "HealthcareService", "id": self.id(f"HealthcareService/{code}/{name}"), "active": True,
            "providedBy": {"reference": f"Organization/{self.ids[code]}"},
            "location": [{"reference": f"Location/{loc_id}"}], "name": f"{SERVICES[kind]}, {name}",
            "type": [{"coding": [{"system": KIND, "code": kind}], "text": SERVICES[kind]}],
        })

    def staff(self, code: str, kind: str, scale: int = 1) -> None:
        for role, display, n in STAFF[kind]:
            for i in range(n * scale):
                female = self.rng.random() < 0.6
                given = self.rng.choice(GIVEN_FEMALE if female else GIVEN_MALE)
                family = self.rng.choice(FAMILY)
                user = f"{given}.{family}.{code}.{role}.{i}".lower().replace("'", "")
                sds = JOB_ROLES[LOCAL_JOB_ROLES[role]]  # the National RBAC job role it is held as
                prac_id = self.id(f"Practitioner/{user}")
                role_id = self.id(f"PractitionerRole/{user}")
                sds_user = f"{uuid.uuid5(self.ns, user).int % 10**12:012d}"
                self.add({
                    "resourceType": "Practitioner", "id": prac_id, "active": True,
                    "identifier": [{"system": SDS_USER, "value": sds_user}],
                    "name": [{"family": family, "given": [given]}], "gender": "female" if female else "male",
                })
                self.add({
                    "resourceType": "PractitionerRole", "id": role_id, "active": True,
                    "practitioner": {"reference": f"Practitioner/{prac_id}"},
                    "organization": {"reference": f"Organization/{self.ids[code]}"},
                    "code": [{"coding": [{"system": JOB_ROLE, "code": role, "display": display},
                                         {"system": SDS_JOB_ROLE, "code": sds.code, "display": sds.display}]}],
                })
                self.out.staff.append(StaffAccount(user, prac_id, role_id, role, code))

    def build(self) -> Directory:
        boroughs = {b.code: b for b in BOROUGHS}
        for ics in ICSS:
            self.org(ICB_CODES[ics.code], f"NHS {ics.name} Integrated Care Board", "ics", "govt")
        for b in BOROUGHS:
            council = gss_code(b)
            self.org(council, f"London Borough of {b.name}" if b.code != "COL" else "City of London Corporation",
                     "council", "govt", system=GSS, district=b.districts[0])
            self.site(council, f"{b.name} adult social care", b, "council")
            self.staff(council, "council")
        for p in PROVIDERS:
            self._provider(p, boroughs)
        for ics in ICSS:
            self._primary_care(ics.code)
        return self.out

    def _provider(self, p: Provider, boroughs: dict[str, Borough]) -> None:
        part_of = ICB_CODES.get(p.ics)
        self.org(p.code, p.name, p.kind, "prov", part_of=part_of, district=boroughs[p.sites[0].borough].districts[0])
        for s in p.sites:
            self.site(p.code, s.name, boroughs[s.borough], p.kind)
        self.staff(p.code, p.kind, scale=max(1, len(p.sites) * self.people // 200_000))

    def _primary_care(self, ics: str) -> None:
        n = 0
        for b in (b for b in BOROUGHS if b.ics == ics):
            share = self.people * b.population_k / LONDON_POPULATION_K
            practices = max(1, round(share / PEOPLE_PER_PRACTICE))
            codes: list[str] = []
            for first in range(0, practices, PRACTICES_PER_PCN):
                pcn = f"U{ICB_CODES[ics][1:]}{b.code}{first // PRACTICES_PER_PCN + 1:02d}"
                self.org(pcn, f"{b.name} {self.rng.choice(PCN_WORDS)} Primary Care Network", "pcn", "prov",
                         part_of=ICB_CODES[ics])
                for _ in range(first, min(practices, first + PRACTICES_PER_PCN)):
                    n += 1
                    code = f"{PRACTICE_PREFIX[ics]}{n:03d}" if n < 1000 else f"{PRACTICE_PREFIX[ics][:2]}{n:04d}"
                    district = self.rng.choice(b.districts)
                    name = f"{self.rng.choice(PRACTICE_WORDS)} {self.rng.choice(PRACTICE_KINDS)}"
                    self.org(code, name, "gp-practice", "prov", part_of=pcn, district=district)
                    self.site(code, name, b, "gp-practice")
                    self.staff(code, "gp-practice")
                    codes.append(code)
            self.out.practices[b.code] = codes
            homes = max(1, round(share / 25_000))  # about one care home per 25,000 people
            for i in range(homes):
                code = f"VC{b.code}{i + 1:02d}"
                self.org(code, f"{self.rng.choice(HOME_WORDS)} Care Home", "care-home", "prov",
                         district=self.rng.choice(b.districts))
                self.site(code, f"{self.rng.choice(HOME_WORDS)} House", b, "care-home")
                self.staff(code, "care-home")


PCN_WORDS = ("Central", "North", "South", "East", "West", "Riverside", "Park", "Healthy", "Central and West")
PRACTICE_WORDS = ("Park Road", "High Street", "Riverside", "The Grove", "Church Lane", "Station Road", "Elm Tree",
                  "Victoria", "Kingsway", "Brook", "Mill Lane", "Oak Tree", "Bridge Street", "Albion", "Market")
PRACTICE_KINDS = ("Surgery", "Medical Centre", "Health Centre", "Medical Practice", "Group Practice")
HOME_WORDS = ("Rosewood", "Oakview", "Willow", "Beechcroft", "Cedar", "Meadow", "Lavender", "Holly", "Ivy", "Maple")


def build(people: int, seed: int) -> Directory:
    """The directory for a population of `people` (deterministic for a seed)."""
    return _Builder(people, seed).build()
