"""Roles, modelled on National RBAC: a user holds job roles at an organisation, and each job role
grants activities. Policy asks for activities, never for job roles, so a new job role is data.

Job roles are the NHS Spine Directory Service (SDS) job role codes (UK Core code system
`UKCore-SDSJobRoleName`), checked against published SDS job role lists. The activities are the
platform's own (`https://sharedcare.example/CodeSystem/activity`): National RBAC's activity codes
(B-codes) were not verified, so none is borrowed. Which job role grants which activity is this
platform's baseline policy (docs/access.md), to be agreed with each organisation's RA manager.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

SDS_JOB_ROLE = "https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName"
ACTIVITY = "https://sharedcare.example/CodeSystem/activity"


class Activity(StrEnum):
    DEMOGRAPHICS = "demographics"  # find a person; see name, NHS number, birth date, address, GP
    VIEW_RECORD = "view-clinical-record"  # the shared care record (within a legitimate relationship)
    AUTHOR_CARE_PLAN = "author-care-plan"  # write and sign off care plans
    DECLARE_RELATIONSHIP = "declare-relationship"  # assert a legitimate relationship, with a reason
    BREAK_GLASS = "break-glass"  # emergency access without a relationship, time-boxed, alerted
    PRIVACY_OFFICER = "privacy-officer"  # investigate the audit trail and alerts
    ANALYST = "analyst"  # de-identified population analytics, no records
    ADMINISTRATOR = "administrator"  # users, clients, sources; never records
    REVIEW_MATCHES = "review-matches"  # the patient index: decide possible matches, merge and unmerge persons


@dataclass(frozen=True)
class JobRole:
    code: str  # SDS job role code
    display: str
    activities: frozenset[Activity]


CLINICAL = frozenset({Activity.DEMOGRAPHICS, Activity.VIEW_RECORD, Activity.DECLARE_RELATIONSHIP,
                      Activity.BREAK_GLASS})
AUTHORING = CLINICAL | {Activity.AUTHOR_CARE_PLAN}

JOB_ROLES: dict[str, JobRole] = {r.code: r for r in (
    JobRole("R8000", "Clinical Practitioner Access Role", AUTHORING),
    JobRole("R8001", "Nurse Access Role", AUTHORING),
    JobRole("R8003", "Health Professional Access Role", CLINICAL),
    JobRole("R8014", "Social Worker Access Role", frozenset({Activity.DEMOGRAPHICS, Activity.VIEW_RECORD,
                                                           Activity.DECLARE_RELATIONSHIP})),
    JobRole("R8008", "Admin/Clinical Support Access Role", frozenset({Activity.DEMOGRAPHICS})),
    JobRole("R8009", "Receptionist Access Role", frozenset({Activity.DEMOGRAPHICS})),
    JobRole("R8010", "Clerical Access Role", frozenset({Activity.DEMOGRAPHICS, Activity.REVIEW_MATCHES})),
    JobRole("R0001", "Privacy Officer", frozenset({Activity.PRIVACY_OFFICER})),
    JobRole("R8012", "Information Officer Access Role", frozenset({Activity.ANALYST})),
    JobRole("R8015", "Systems Support Access Role", frozenset({Activity.ADMINISTRATOR})),
)}

# The synthetic directory's local job roles (synth/directory.py STAFF) as SDS job roles.
LOCAL_JOB_ROLES = {
    "gp": "R8000", "consultant": "R8000", "ed-doctor": "R8000", "psychiatrist": "R8000",
    "practice-nurse": "R8001", "ward-nurse": "R8001", "mental-health-nurse": "R8001", "district-nurse": "R8001",
    "paramedic": "R8003", "111-clinician": "R8003", "physiotherapist": "R8003",
    "social-worker": "R8014", "care-coordinator": "R8014",
    "receptionist": "R8009", "emergency-call-handler": "R8008", "111-call-handler": "R8008",
    "care-home-manager": "R8008",
}


def activities(job_roles: Iterable[str]) -> frozenset[Activity]:
    """What the holder of these SDS job roles may do; an unknown code grants nothing."""
    granted: set[Activity] = set()
    for code in job_roles:
        role = JOB_ROLES.get(code)
        if role is not None:
            granted |= role.activities
    return frozenset(granted)
