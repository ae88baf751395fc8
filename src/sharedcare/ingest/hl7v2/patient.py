"""PID (with PD1 and NK1) to the source's Patient, shared by every message type that names a patient.

The key the Patient is found by is the source's own identifier for the patient: the first PID-3
repetition that is not an NHS number (the hospital number), else the NHS number. The NHS number is
kept only when its check digit is right; a wrong one is kept as the source's unverified identifier and
a warning, so the patient index never links by it (docs/mpi.md).
"""

from __future__ import annotations

from typing import Any

from sharedcare.ingest.hl7v2 import datatypes as dt
from sharedcare.ingest.hl7v2.mapping import Context, Mapped, Transaction, optional_date, require
from sharedcare.ingest.hl7v2.message import REQUIRED_FIELD_MISSING, Message, ParseError, Segment
from sharedcare.mpi.normalise import NHS_NUMBER_SYSTEM

# HL7 table 0063 (relationship) codes as FHIR's v2-0131 contact roles are too coarse; the relationship
# is kept as sent, under the v2 table it comes from.
DECEASED_YES = ("Y", "YES", "TRUE", "1")


def identifiers(pid: Segment, ctx: Context, mapped: Mapped) -> list[dict[str, Any]]:
    """PID-3 (and PID-2, PID-4 of older versions) as Identifiers, local ones first."""
    out: list[dict[str, Any]] = []
    for n in (3, 2, 4):
        for rep in pid[n].reps():
            ident, _valid = dt.identifier(rep, ctx.ods)
            if ident is None:
                continue
            if ident["system"] == dt.UNVERIFIED_NHS_SYSTEM:
                mapped.warnings.append(f"PID-{n}: an NHS number fails its check digit and is kept as the "
                                       "source's unverified identifier")
            if not any(i["system"] == ident["system"] and i["value"] == ident["value"] for i in out):
                out.append(ident)
    return out


def key(idents: list[dict[str, Any]]) -> dict[str, Any]:
    local = [i for i in idents if i["system"] != NHS_NUMBER_SYSTEM]
    if local:
        return {"system": local[0]["system"], "value": local[0]["value"]}
    if idents:
        return {"system": idents[0]["system"], "value": idents[0]["value"]}
    raise ParseError("PID-3 holds no patient identifier", REQUIRED_FIELD_MISSING, segment="PID", field_no=3)


def resource(msg: Message, pid: Segment, ctx: Context, mapped: Mapped) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Patient PID describes, and the identifier it is found by."""
    idents = identifiers(pid, ctx, mapped)
    found_by = key(idents)
    patient: dict[str, Any] = {"resourceType": "Patient", "identifier": idents, "active": True}
    names = [n for n in (dt.human_name(rep) for rep in pid[5].reps()) if n]
    if names:
        patient["name"] = names
    telecom = [t for t in (dt.contact_point(rep) for f in (13, 14) for rep in pid[f].reps()) if t]
    if telecom:
        patient["telecom"] = telecom
    sex = dt.gender(pid[8].value)
    if sex:
        patient["gender"] = sex
    born = optional_date(pid[7], mapped, "PID-7: the date of birth is not a valid date and was left out")
    if born:
        patient["birthDate"] = born
    died = dt.datetime_(pid[29].comp(1))
    if died:
        patient["deceasedDateTime"] = died
    elif pid[30].value.upper() in DECEASED_YES:
        patient["deceasedBoolean"] = True
    addresses = [a for a in (dt.address(rep) for rep in pid[11].reps()) if a]
    if addresses:
        patient["address"] = addresses
    marital = pid[16].value
    if marital:
        patient["maritalStatus"] = {"coding": [{"system": dt.hl7_table("0002"), "code": marital}]}
    multiple = pid[24].value.upper()
    order = pid[25].value
    if order.isdigit() and multiple in ("Y", ""):
        patient["multipleBirthInteger"] = int(order)
    elif multiple in ("Y", "N"):
        patient["multipleBirthBoolean"] = multiple == "Y"
    language = pid[15].comp(1)
    if language:
        patient["communication"] = [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]}}]
    pd1 = msg.first("PD1")
    if pd1 is not None:
        practice = pd1[3].comp(3) or pd1[3].comp(10)
        if practice:
            gp: dict[str, Any] = {"identifier": {"system": dt.ODS_SYSTEM, "value": practice}}
            if pd1[3].comp(1):
                gp["display"] = pd1[3].comp(1)
            patient["generalPractitioner"] = [gp]
    contacts = [c for c in (_contact(nk1) for nk1 in msg.all("NK1")) if c]
    if contacts:
        patient["contact"] = contacts
    return patient, found_by


def _contact(nk1: Segment) -> dict[str, Any] | None:
    name = dt.human_name(nk1[2])
    if name is None:
        return None
    out: dict[str, Any] = {"name": name}
    relationship = nk1[3].comp(1)
    if relationship:
        out["relationship"] = [{"coding": [{"system": dt.hl7_table("0063"), "code": relationship,
                                            **({"display": nk1[3].comp(2)} if nk1[3].comp(2) else {})}]}]
    telecom = [t for t in (dt.contact_point(rep) for f in (5, 6) for rep in nk1[f].reps()) if t]
    if telecom:
        out["telecom"] = telecom
    home = dt.address(nk1[4])
    if home:
        out["address"] = home
    return out


def add(msg: Message, ctx: Context, tx: Transaction, mapped: Mapped, *, update: bool) -> str:
    """Put the message's Patient into the transaction; its fullUrl. Sets the ordering key.

    `update`: the message speaks for the patient's details (ADT), so the Patient is replaced by what
    PID says; otherwise it is created only when the source has sent none yet."""
    pid = require(msg.first("PID"), "PID")
    patient, found_by = resource(msg, pid, ctx, mapped)
    mapped.patient_key = f"{found_by['system']}|{found_by['value']}"
    return tx.put(patient, found_by) if update else tx.ensure(patient, found_by)


def reference(full_url: str) -> dict[str, str]:
    return {"reference": full_url}
