"""Audit records served as FHIR AuditEvent, in the IHE Basic Audit Log Patterns (BALP) shapes.

One audit row (access/audit.py) becomes one AuditEvent:
- `type` rest (a RESTful interaction), `subtype` the FHIR interaction (read, search-type, create ...),
  `action` C R U D E, `outcome` 0 / 4 / 8, `recorded`;
- agents: the user (information recipient, requestor) with their SDS job role and purpose of use; their
  organisation (ODS code, as a healthcare provider agent); the client (Source Role ID) with its network
  address; this server (Destination Role ID);
- `source`: this node, an application server;
- entities: the patient (Person / Patient), the resource touched (System Object / Domain Resource, with
  its version) and, for searches, the query (System Object / Query, base64 as BALP says).
Declared relationships and break-glass are Security Alert events (DICOM 110113) with subtypes for
"Emergency Override Started" (110127) and "Stopped" (110138), and purpose of use ETREAT.

For a patient asking who looked at their record (issue 5 item 10, AU4), `for_patient` keeps only the
organisation, the role and the time: no staff identities, addresses, queries or other patients.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from sharedcare.access.roles import JOB_ROLES, SDS_JOB_ROLE
from sharedcare.fhir.jsonio import dumps

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
PURPOSE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
AGENT_ID = "https://sharedcare.example/Id/agent"
# The interactions of the FHIR REST API (subtypes from restful-interaction); others are this platform's.
REST = {"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "history-system",
        "create", "search-type", "search-system", "search-compartment", "capabilities", "transaction", "batch",
        "operation"}
SECURITY_ALERT = {
    "break-glass": ("110127", "Emergency Override Started"),
    "break-glass-ended": ("110138", "Emergency Override Stopped"),
    "declare-relationship": ("declare-relationship", "Legitimate relationship declared"),
    "declare-relationship-ended": ("declare-relationship-ended", "Declared relationship ended"),
    "launch-context": ("launch-context", "Legitimate relationship from a launch context"),
    "launch-context-ended": ("launch-context-ended", "Launch-context relationship ended"),
}
SHARED = "_shared"


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _event_type(interaction: str) -> tuple[dict[str, str], dict[str, str]]:
    alert = SECURITY_ALERT.get(interaction)
    if alert is not None:
        system = DCM if alert[0].isdigit() else "https://sharedcare.example/CodeSystem/audit-subtype"
        return _coding(DCM, "110113", "Security Alert"), _coding(system, alert[0], alert[1])
    if interaction in REST:
        return _coding(EVENT_TYPE, "rest", "Restful Operation"), _coding(INTERACTION, interaction)
    return (_coding(DCM, "110100", "Application Activity"),
            _coding("https://sharedcare.example/CodeSystem/audit-subtype", interaction))


def _user_agent(row: Mapping[str, Any]) -> dict[str, Any]:
    kind = row["agent_kind"]
    agent: dict[str, Any] = {
        "type": {"coding": [_coding(PARTICIPATION, "IRCP", "information recipient")]},
        "who": {"identifier": {"system": AGENT_ID, "value": row["agent_id"]}},
        "requestor": True,
    }
    role = row.get("agent_role")
    if role:
        known = JOB_ROLES.get(role)
        agent["role"] = [{"coding": [_coding(SDS_JOB_ROLE, role, known.display if known else None)]}]
    elif kind in ("patient", "system"):
        agent["role"] = [{"text": kind}]
    if row.get("purpose"):
        agent["purposeOfUse"] = [{"coding": [_coding(PURPOSE, row["purpose"])]}]
    return agent


def _org_agent(org: str) -> dict[str, Any]:
    return {"type": {"coding": [_coding(ROLE_CLASS, "PROV", "healthcare provider")]},
            "who": {"identifier": {"system": ODS, "value": org}}, "requestor": False}


def to_audit_event(row: Mapping[str, Any], *, node_id: str, base_url: str) -> dict[str, Any]:
    """The AuditEvent for one audit row (a mapping of the audit table's columns)."""
    event_type, subtype = _event_type(row["interaction"])
    agents = [_user_agent(row)]
    if row.get("agent_org"):
        agents.append(_org_agent(row["agent_org"]))
    client: dict[str, Any] = {"type": {"coding": [_coding(DCM, "110153", "Source Role ID")]}, "requestor": False}
    if row.get("source_ip"):
        client["network"] = {"address": row["source_ip"], "type": "2"}
    agents.append(client)
    agents.append({"type": {"coding": [_coding(DCM, "110152", "Destination Role ID")]}, "requestor": False,
                   "who": {"display": node_id}, "network": {"address": base_url, "type": "5"}})
    entities: list[dict[str, Any]] = []
    for patient in (row.get("patients") or "").split():
        entities.append({"what": {"reference": f"Patient/{patient}"},
                         "type": _coding(ENTITY_TYPE, "1", "Person"), "role": _coding(OBJECT_ROLE, "1", "Patient")})
    if row.get("res_type") and row.get("res_id"):
        ref = f"{row['res_type']}/{row['res_id']}"
        if row.get("version_id"):
            ref += f"/_history/{row['version_id']}"
        entities.append({"what": {"reference": ref}, "type": _coding(ENTITY_TYPE, "2", "System Object"),
                         "role": _coding(OBJECT_ROLE, "4", "Domain Resource")})
    if row.get("query") is not None and row["interaction"].startswith("search"):
        entities.append({"type": _coding(ENTITY_TYPE, "2", "System Object"),
                         "role": _coding(OBJECT_ROLE, "24", "Query"),
                         "query": base64.b64encode(str(row["query"]).encode()).decode()})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent", "id": str(row["seq"]),
        "meta": {"versionId": "1", "lastUpdated": _instant(row["recorded"])},
        "type": event_type, "subtype": [subtype], "action": row["action"],
        "recorded": _instant(row["recorded"]), "outcome": row["outcome"],
        "agent": agents,
        "source": {"site": node_id, "observer": {"display": node_id},
                   "type": [_coding(SOURCE_TYPE, "4", "Application Server")]},
    }
    if row.get("purpose"):
        event["purposeOfEvent"] = [{"coding": [_coding(PURPOSE, row["purpose"])]}]
    if entities:
        event["entity"] = entities
    return event


def for_patient(row: Mapping[str, Any], *, node_id: str, own: frozenset[str]) -> dict[str, Any]:
    """What a patient may see of one look at their record: which organisation and role, when, and
    what kind of look; never who (by name or id), from where, what they searched for, or anyone else."""
    event_type, subtype = _event_type(row["interaction"])
    agent: dict[str, Any] = {"type": {"coding": [_coding(PARTICIPATION, "IRCP", "information recipient")]},
                             "requestor": True}
    role = row.get("agent_role")
    if role:
        known = JOB_ROLES.get(role)
        agent["role"] = [{"coding": [_coding(SDS_JOB_ROLE, role, known.display if known else None)]}]
    else:
        agent["role"] = [{"text": {"patient": "you", "system": "a connected system"}.get(row["agent_kind"],
                                                                                         row["agent_kind"])}]
    agents = [agent]
    if row.get("agent_org"):
        agents.append(_org_agent(row["agent_org"]))
    patients = [p for p in (row.get("patients") or "").split() if p in own]
    return {
        "resourceType": "AuditEvent", "id": str(row["seq"]),
        "meta": {"versionId": "1", "lastUpdated": _instant(row["recorded"])},
        "type": event_type, "subtype": [subtype], "action": row["action"],
        "recorded": _instant(row["recorded"]), "outcome": row["outcome"], "agent": agents,
        "source": {"observer": {"display": node_id}},
        "entity": [{"what": {"reference": f"Patient/{p}"}, "type": _coding(ENTITY_TYPE, "1", "Person"),
                    "role": _coding(OBJECT_ROLE, "1", "Patient")} for p in patients],
    }


def _instant(recorded: str) -> str:
    """A stored timestamp (UTC, no offset) as a FHIR instant."""
    return recorded[:23] + "Z" if "T" in recorded else recorded


def encode(event: dict[str, Any]) -> bytes:
    return dumps(event)
