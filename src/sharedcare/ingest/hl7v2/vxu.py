"""VXU^V04 (unsolicited vaccination record update) to Immunization, following HL7's v2-to-FHIR VXU_V04
message map (segment maps RXA and RXR to Immunization) and the ways UK systems code vaccines (SNOMED
CT `SCT`, dm+d `DMD`) besides the CDC's CVX and MVX.

| from | what is written |
|---|---|
| PID | the Patient, created only if the source has sent none: a vaccination never overwrites their details |
| PV1-19 | the visit, referenced by identifier as `encounter` |
| RXA | one Immunization per RXA |
| RXA-5 | vaccineCode, every coding as sent (CVX, SNOMED CT `SCT`, dm+d `DMD`, ...) |
| RXA-3, RXA-22 | occurrenceDateTime, recorded |
| RXA-6, RXA-7 | doseQuantity (999, the unknown amount, is left out) |
| RXA-9 | primarySource: true for `00` (new immunisation record); else false, the code as reportOrigin |
| RXA-10, ORC-12 | performer: administering (AP) and ordering (OP) provider, by staff identifier and name |
| RXA-15, -16, -17 | lotNumber, expirationDate, manufacturer |
| RXA-19 | reasonCode (the indication) |
| RXA-20 | status: CP (or none) completed; PA completed, isSubpotent; RE refused and NA not administered not-done |
| RXA-18 | statusReason of a not-done (for RE without one: v3 ActReason PATOBJ) |
| RXA-21 | D (delete): entered-in-error |
| RXR-1, RXR-2 | route, site |
| ORC-3 | identifier: the filler order number; without one, the patient's key, RXA-5 code and RXA-3 |

Not mapped: the OBX segments after an RXA (funding source and programme eligibility, the vaccine
information statements given, the dose number in a series, contraindications) and their NTEs; the
administered-at location (RXA-11); the patient's immunisation registry status (PD1). When RXA-9 is
empty the message does not say whether the record is a primary source, so primarySource is left out.
A message naming more than one patient (several PIDs) is refused.
"""

from __future__ import annotations

from typing import Any

from sharedcare.ingest.hl7v2 import datatypes as dt
from sharedcare.ingest.hl7v2 import patient as pid_map
from sharedcare.ingest.hl7v2.mapping import (
    Context,
    Mapped,
    Transaction,
    begin,
    mapper,
    one_patient,
    optional_date,
    staff_reference,
    visit_reference,
)
from sharedcare.ingest.hl7v2.message import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    Field,
    Message,
    ParseError,
    Segment,
)
from sharedcare.ingest.hl7v2.oru import number, unit

TRIGGERS = ("V04",)
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
FUNCTION = dt.hl7_table("0443")
ORIGIN = "http://terminology.hl7.org/CodeSystem/immunization-origin"
SUBPOTENT = "http://terminology.hl7.org/CodeSystem/immunization-subpotent-reason"
MVX = "http://hl7.org/fhir/sid/mvx"
NEW_RECORD = "00"  # CDC table NIP001 (information source): new immunisation record
# NIP001 historical sources that have an immunization-origin code.
ORIGINS = {"02": ("provider", "Other Provider"), "03": ("record", "Written Record"),
           "04": ("recall", "Parent/Guardian/Patient Recall"), "05": ("record", "Written Record"),
           "06": ("record", "Written Record"), "07": ("school", "School Record"), "08": ("record", "Written Record")}
UNKNOWN_AMOUNT = "999"
COMPLETION = {"CP": "completed", "PA": "completed", "RE": "not-done", "NA": "not-done", "": "completed"}


@mapper("VXU", TRIGGERS)
def vxu(msg: Message, ctx: Context) -> Mapped:
    tx, mapped = begin(msg)
    one_patient(msg, "a vaccination message")
    patient_url = pid_map.add(msg, ctx, tx, mapped, update=False)
    groups = msg.groups("RXA", ("RXR",))
    if not groups:
        raise ParseError("a vaccination message needs an RXA segment", REQUIRED_FIELD_MISSING, segment="RXA")
    encounter = visit_reference(msg, ctx)
    previous = 0
    for group in groups:
        rxa = group[0]
        orcs = [s for s in msg.all("ORC") if previous < s.position < rxa.position]
        previous = rxa.position
        _immunization(rxa, orcs[-1] if orcs else None, group[1:], ctx, tx, mapped, patient_url, encounter)
    mapped.bundle = tx.bundle()
    return mapped


def _immunization(rxa: Segment, orc: Segment | None, members: list[Segment], ctx: Context, tx: Transaction,
                  mapped: Mapped, patient_url: str, encounter: dict[str, Any] | None) -> None:
    vaccine = dt.codeable(rxa[5], ctx.ods)
    vaccine_key = rxa[5].comp(1).strip() or rxa[5].comp(4).strip()
    if vaccine is None or not vaccine_key:
        raise ParseError("RXA-5 names no vaccine", REQUIRED_FIELD_MISSING, segment="RXA", position=rxa.position,
                         field_no=5)
    given = rxa[3].comp(1).strip()
    occurred = dt.datetime_(given)
    if occurred is None:
        raise ParseError("RXA-3 gives no valid date of administration",
                         DATA_TYPE_ERROR if given else REQUIRED_FIELD_MISSING, segment="RXA", position=rxa.position,
                         field_no=3)
    key = dt.entity_identifier(orc[3], ctx.ods, "vaccination-order") if orc is not None else None
    identifiers = [dt.typed(key, "FILL")] if key else []
    if key is None:
        _, _, patient_value = (mapped.patient_key or "").partition("|")
        key = {"system": f"{dt.LOCAL_ID_BASE}/{ctx.ods}/vaccination",
               "value": f"{patient_value}/{vaccine_key}/{given}"}
    completion = rxa[20].value.strip().upper()
    status = COMPLETION.get(completion)
    if status is None:
        status = "completed"
        mapped.warnings.append(f"RXA-20 (segment {rxa.position}): not a completion status from table 0322; "
                               "completed assumed")
    if rxa[21].value.strip().upper() == "D":
        status = "entered-in-error"
    immunization: dict[str, Any] = {"resourceType": "Immunization", "identifier": identifiers, "status": status}
    if status == "not-done":
        reason = dt.codeable(rxa[18], ctx.ods)
        if reason is None and completion == "RE":
            reason = {"coding": [{"system": ACT_REASON, "code": "PATOBJ", "display": "patient objection"}]}
        if reason:
            immunization["statusReason"] = reason
    immunization |= {"vaccineCode": vaccine, "patient": {"reference": patient_url}}
    if encounter:
        immunization["encounter"] = encounter
    immunization["occurrenceDateTime"] = occurred
    entered = dt.datetime_(rxa[22].comp(1))
    if entered:
        immunization["recorded"] = entered
    source = rxa[9].comp(1).strip()
    if source:
        immunization["primarySource"] = source == NEW_RECORD
        if source != NEW_RECORD:
            immunization["reportOrigin"] = _origin(rxa[9], ctx)
    manufacturer = _manufacturer(rxa[17], ctx)
    if manufacturer:
        immunization["manufacturer"] = manufacturer
    lot = rxa[15].value.strip()
    if lot:
        immunization["lotNumber"] = lot
    expiry = optional_date(rxa[16], mapped, f"RXA-16 (segment {rxa.position}): not a valid expiry date; left out")
    if expiry:
        immunization["expirationDate"] = expiry
    rxr = next((s for s in members if s.name == "RXR"), None)
    if rxr is not None:
        site = dt.codeable(rxr[2], ctx.ods)
        if site:
            immunization["site"] = site
        route = dt.codeable(rxr[1], ctx.ods)
        if route:
            immunization["route"] = route
    dose = _dose(rxa, mapped)
    if dose:
        immunization["doseQuantity"] = dose
    performers = [p for p in (_performer(rep, "AP", "Administering Provider", ctx) for rep in rxa[10].reps()) if p]
    if orc is not None:
        performers += [p for p in (_performer(rep, "OP", "Ordering Provider", ctx) for rep in orc[12].reps()) if p]
    if performers:
        immunization["performer"] = performers
    reasons = [c for c in (dt.codeable(rep, ctx.ods) for rep in rxa[19].reps()) if c]
    if reasons:
        immunization["reasonCode"] = reasons
    if completion == "PA":
        immunization["isSubpotent"] = True
        immunization["subpotentReason"] = [{"coding": [{"system": SUBPOTENT, "code": "partial",
                                                        "display": "Partial Dose"}]}]
    tx.put(immunization, key)


def _origin(field: Field, ctx: Context) -> dict[str, Any]:
    """RXA-9 (a historical record's source) as reportOrigin: the code as sent, and the FHIR
    immunization-origin code when there is one."""
    concept = dt.codeable(field, ctx.ods) or {}
    origin = ORIGINS.get(field.comp(1).strip())
    if origin:
        concept.setdefault("coding", []).append({"system": ORIGIN, "code": origin[0], "display": origin[1]})
    return concept


def _manufacturer(field: Field, ctx: Context) -> dict[str, Any] | None:
    """RXA-17 (CE: an MVX code, or a source's own code and name) as a reference by identifier."""
    code, name, system = field.comp(1).strip(), field.comp(2).strip(), field.comp(3).strip().upper()
    if not code and not name:
        return None
    out: dict[str, Any] = {"type": "Organization"}
    if code:
        out["identifier"] = {"system": MVX if system == "MVX" else f"{dt.LOCAL_ID_BASE}/{ctx.ods}/manufacturer",
                             "value": code}
    out["display"] = name or code
    return out


def _dose(rxa: Segment, mapped: Mapped) -> dict[str, Any] | None:
    amount = rxa[6].value.strip()
    if not amount or amount == UNKNOWN_AMOUNT:
        return None
    value = number(amount)
    if value is None:
        mapped.warnings.append(f"RXA-6 (segment {rxa.position}): the amount given is not a number; left out")
        return None
    return {"value": value} | unit(rxa[7])


def _performer(xcn: Field, function: str, display: str, ctx: Context) -> dict[str, Any] | None:
    """An XCN as a performer: the practitioner by the source's staff identifier and their name."""
    actor = staff_reference(xcn, ctx)
    if actor is None:
        return None
    return {"function": {"coding": [{"system": FUNCTION, "code": function, "display": display}]}, "actor": actor}
