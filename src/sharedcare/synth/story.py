"""What happens to one synthetic person, before any source writes it down.

`clinical.story()` fills a `Story` for each person; the feed writers then turn its parts into each
source's native format (FHIR bundles, HL7 v2 messages, CSV rows), each source recording the person
its own way (`Recorded`). Codes are keys into `codes.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class Recorded:
    """The person as one source recorded them: its own local id, and the NHS number, name, birth date
    and address as that source holds them (with the slips real records carry; `variations` names them)."""

    source: str  # ODS code (NHS organisations) or GSS code (councils) of the source
    local_id: str  # the source's own identifier for the person (hospital number, case number, ...)
    nhs_number: str | None
    nhs_status: str  # correct, missing, mistyped
    given: str
    family: str
    birth_date: date | None
    sex: str  # female, male
    postcode: str | None
    variations: tuple[str, ...] = ()  # e.g. nickname, typo, hyphenated, swapped-names, old-address, dob-swap


@dataclass(frozen=True)
class Problem:
    key: str  # codes.CONDITIONS key
    onset: date
    resolved: date | None = None


@dataclass(frozen=True)
class Issue:
    """A medicine prescribed by the GP: a repeat authorisation (intent plan) or one issue (intent order)."""

    key: str  # codes.MEDICINES key
    on: date
    intent: str  # plan, order
    quantity: int
    until: date | None = None  # end of a repeat authorisation


@dataclass(frozen=True)
class Reading:
    on: date
    systolic: int
    diastolic: int
    setting: str  # clinic, home, abpm


@dataclass(frozen=True)
class Finding:
    """A coded GP entry that is not a problem: annual reviews, action plans, smoking status, BMI."""

    key: str  # codes.OBSERVATIONS key
    on: date
    value: float | None = None
    unit: str | None = None


@dataclass(frozen=True)
class Allergy:
    substance: str  # codes.ALLERGENS key
    reaction: str  # codes.REACTIONS key
    recorded: date
    severe: bool


@dataclass(frozen=True)
class Vaccination:
    dose: str  # codes.IMMUNISATION_PROCEDURES key
    due: date
    on: date | None  # None: not given (declined, did not attend, or not yet)
    product: str | None = None  # codes.VACCINES key
    refusal: str | None = None  # codes.NOT_GIVEN key, with the date it was recorded in `refused_on`
    refused_on: date | None = None


@dataclass(frozen=True)
class Visit:
    """A hospital or mental health episode: an emergency department attendance (possibly ending in
    admission), an elective admission, or a mental health crisis contact or admission."""

    kind: str  # emergency, elective, mh-crisis, mh-admission
    provider: str  # ODS code
    site: str  # site name
    visit_id: str  # the provider's visit number
    arrived: datetime
    admitted: datetime | None  # decision to admit (inpatient from then on)
    left: datetime | None  # None: still there on the as-of date
    diagnosis: str  # codes.CONDITIONS key
    wards: tuple[tuple[datetime, str], ...] = ()  # (moved at, ward); the first is the admitting ward
    disposition: str = "home"  # home, died, care-home, transferred
    by_ambulance: bool = False
    updated_at: datetime | None = None  # an A08: the details were corrected during the visit
    consultant: str = ""  # responsible clinician's name


@dataclass(frozen=True)
class LabReport:
    provider: str  # ODS code of the laboratory's trust
    order_id: str
    collected: datetime
    panel: str  # codes.PANELS key
    results: tuple[tuple[str, float], ...]  # (codes.TESTS key, value)
    requester: str  # ODS code of the requesting organisation (GP practice or the trust)


@dataclass(frozen=True)
class Appointment:
    provider: str  # ODS code
    site: str
    appointment_id: str
    specialty: str  # a clinic's specialty (see clinical.SPECIALTIES)
    start: datetime
    minutes: int
    booked_on: date
    status: str  # booked, fulfilled, noshow, cancelled
    moved_from: datetime | None = None  # rescheduled (an SIU^S14) from this time


@dataclass(frozen=True)
class Incident:
    """An ambulance incident (999 call)."""

    incident_id: str
    called: datetime
    outcome: str  # conveyed, see-and-treat, hear-and-treat
    impression: str  # codes.CONDITIONS key
    destination: str | None  # ODS code of the trust conveyed to
    news2: int | None  # None when no crew attended
    heart_rate: int | None = None
    respiratory_rate: int | None = None
    spo2: int | None = None


@dataclass(frozen=True)
class Call111:
    call_id: str
    called: datetime
    symptom: str  # the NHS Pathways symptom group, as text
    disposition: str  # see clinical.DISPOSITIONS_111
    incident_id: str | None = None  # the ambulance incident it led to


@dataclass(frozen=True)
class CarePackage:
    council: str  # GSS code
    case_id: str
    service: str  # home-care, residential, day-care, direct-payment, child-protection-plan
    start: date
    end: date | None
    hours_per_week: float | None
    key_worker: str
    team: str


@dataclass(frozen=True)
class CancerPathway:
    """An urgent suspected cancer referral and what followed, as the cancer waiting times dataset
    counts it (clock start on receipt; FDS end when told; 62-day stop at first treatment)."""

    pathway_id: str  # Patient Pathway Identifier
    site: str  # suspected cancer: breast, lower-gi, lung, urology, nss
    referred: date  # decision to refer (GP)
    received: date  # clock start
    first_provider: str  # ODS code
    first_seen: date | None  # None (and every later milestone): not yet by the as-of date
    diagnostic: date | None
    told: date | None  # FDS end: diagnosis communicated or cancer ruled out
    cancer: str | None  # codes.CONDITIONS key of the diagnosis, None when ruled out (or not yet known)
    transfer_sent: date | None = None  # inter-provider transfer
    transfer_received: date | None = None
    treating_provider: str | None = None
    decision_to_treat: date | None = None
    treated: date | None = None  # first definitive treatment


@dataclass(frozen=True)
class EndOfLifePlan:
    recorded: date
    cpr: str  # dnacpr, for-cpr
    preferred_place: str  # home, care-home, hospice, hospital
    what_matters: str
    review_on: date


@dataclass
class Story:
    problems: list[Problem] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    allergies: list[Allergy] = field(default_factory=list)
    vaccinations: list[Vaccination] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    labs: list[LabReport] = field(default_factory=list)
    appointments: list[Appointment] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    calls: list[Call111] = field(default_factory=list)
    packages: list[CarePackage] = field(default_factory=list)
    pathways: list[CancerPathway] = field(default_factory=list)
    plan: EndOfLifePlan | None = None
    alerts: list[str] = field(default_factory=list)  # codes.OBSERVATIONS keys of GP flags
