"""Legitimate relationships: which organisations are caring for a person, read from the records.

Staff see another organisation's data about a person only while their own organisation has an
active relationship with that person (issue 5). This module says which relationships a stored
resource gives, so that they can be written to the relationship table with the resource (in the
same transaction) and the policy can join on them inside every query:

- a Patient's `generalPractitioner` Organization: the registered practice, while it stays so;
  (organisations are matched by literal reference, `Organization/<id>`, or by ODS code identifier);
- an Encounter still open (planned, arrived, triaged, in-progress, onleave): its `serviceProvider`,
  while open; a finished emergency (EMER), field (FLD, ambulance) or virtual (VR, 111) encounter: its
  `serviceProvider` for 72 hours after it ended;
- an active (or waitlisted) EpisodeOfCare: its `managingOrganization`, while active;
- an active (or on-hold) ServiceRequest: its `requester` and `performer` organisations, while open;
- an Appointment proposed, pending, booked, arrived or checked-in: its Organization participants,
  until 72 hours after it ends.

Declared relationships and break-glass are recorded by the people who make them, not derived here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sharedcare.errors import BadRequest
from sharedcare.fhir.search.query import FMT, date_range

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
RECENT = timedelta(hours=72)
OPEN_ENCOUNTER = frozenset({"planned", "arrived", "triaged", "in-progress", "onleave"})
URGENT_CLASSES = frozenset({"EMER", "FLD", "VR"})
OPEN_EPISODE = frozenset({"active", "waitlist"})
OPEN_REFERRAL = frozenset({"active", "on-hold"})
OPEN_APPOINTMENT = frozenset({"proposed", "pending", "booked", "arrived", "checked-in"})


@dataclass(frozen=True)
class Relationship:
    patient: str  # the Patient id (the resource's patient compartment)
    organisation: str  # "Organization/<id>" as referenced, or "ods:<code>" for a reference by ODS code
    kind: str  # registered, encounter, urgent-care, episode, referral, appointment
    until: datetime | None  # None: while the record stays as it is


def relationships(resource: dict[str, Any]) -> list[Relationship]:
    """The relationships a resource gives (none for resources that give none, or without a patient)."""
    res_type = resource.get("resourceType")
    if res_type == "Patient":
        patient = resource.get("id")
        if not isinstance(patient, str):
            return []
        return [Relationship(patient, org, "registered", None)
                for org in _organisations(resource.get("generalPractitioner"))]
    patient = _patient(resource)
    if patient is None:
        return []
    status = resource.get("status")
    if res_type == "Encounter":
        provider = _organisations([resource.get("serviceProvider")])
        if status in OPEN_ENCOUNTER:
            return [Relationship(patient, org, "encounter", None) for org in provider]
        cls = (resource.get("class") or {}).get("code")
        end = _end(resource.get("period"))
        if status == "finished" and cls in URGENT_CLASSES and end is not None:
            return [Relationship(patient, org, "urgent-care", end + RECENT) for org in provider]
        return []
    if res_type == "EpisodeOfCare" and status in OPEN_EPISODE:
        return [Relationship(patient, org, "episode", None)
                for org in _organisations([resource.get("managingOrganization")])]
    if res_type == "ServiceRequest" and status in OPEN_REFERRAL:
        orgs = _organisations([resource.get("requester"), *(resource.get("performer") or [])])
        return [Relationship(patient, org, "referral", None) for org in orgs]
    if res_type == "Appointment" and status in OPEN_APPOINTMENT:
        end = _end({"end": resource.get("end")}) or _end({"end": resource.get("start")})
        orgs = _organisations([p.get("actor") for p in resource.get("participant") or [] if isinstance(p, dict)])
        return [Relationship(patient, org, "appointment", end + RECENT if end else None) for org in orgs]
    return []


def active(found: list[Relationship], organisation: str, now: datetime) -> bool:
    """Whether any of `found` ties `organisation` to the person at `now`."""
    return any(r.organisation == organisation and (r.until is None or now < r.until) for r in found)


def _patient(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Appointment":
        refs = [p.get("actor") for p in resource.get("participant") or [] if isinstance(p, dict)]
    else:
        refs = [resource.get("subject"), resource.get("patient")]
    for ref in refs:
        target = (ref or {}).get("reference") if isinstance(ref, dict) else None
        if isinstance(target, str) and target.startswith("Patient/") and "/" not in target[8:] and target[8:]:
            return target[8:]
    return None


def _organisations(refs: Any) -> list[str]:
    """Organisations referenced: `Organization/<id>` for a literal reference, `ods:<code>` for a logical
    one by ODS code (as NHS systems often send, e.g. a PDS registered practice)."""
    out: list[str] = []
    for ref in refs or []:
        if not isinstance(ref, dict):
            continue
        target = ref.get("reference")
        ident = ref.get("identifier")
        if isinstance(target, str) and target.startswith("Organization/") and target[13:] and "/" not in target[13:]:
            key = target
        elif target is None and (code := ods_value(ident)) is not None:
            key = f"ods:{code}"
        else:
            continue
        if key not in out:
            out.append(key)
    return out


def ods_value(identifier: Any) -> str | None:
    """The ODS code an Identifier carries (upper case), or None when it is not an ODS identifier."""
    if isinstance(identifier, dict) and identifier.get("system") == ODS and isinstance(identifier.get("value"), str) \
            and identifier["value"].strip():
        return str(identifier["value"]).strip().upper()
    return None


def _end(period: Any) -> datetime | None:
    """The latest instant a period's end (or a dateTime) can mean, in UTC; None when absent or bad."""
    value = period.get("end") if isinstance(period, dict) else None
    if not isinstance(value, str):
        return None
    if value[:1].isdigit():  # a date, not a search prefix
        try:
            _, _, high = date_range(value)
        except BadRequest:
            return None
        return datetime.strptime(high, FMT).replace(tzinfo=UTC)
    return None
