"""ADT (admission, discharge, transfer) to Patient, Encounter, EpisodeOfCare, Location and Condition,
following HL7's v2-to-FHIR ADT_A01 map and NHS ADT conventions.

| trigger | meaning | what is written |
|---|---|---|
| A01 | admit | Patient; Encounter in-progress at PV1-3 |
| A02 | transfer | Encounter in-progress at the new location, the prior one (PV1-6) completed |
| A03 | discharge | Encounter finished, ended at PV1-45 (else EVN-2), discharge disposition |
| A04 | register (an outpatient or emergency attendance) | Patient; Encounter in-progress |
| A05 | pre-admit | Patient; Encounter planned |
| A06, A07 | outpatient to inpatient, and back | Encounter with the new class |
| A08 | update patient information | Patient; Encounter as PV1 now says |
| A11 | cancel admit or visit | Encounter cancelled |
| A12 | cancel transfer | Encounter back at the location PV1-3 names |
| A13 | cancel discharge | Encounter in-progress again, its end removed |
| A28, A31 | add, update person information | Patient only |
| A34, A39, A40 | merge (patient id, person, identifier list) | Patient; the MRG record merged into it (patient index) |

DG1 segments are the encounter's diagnoses (Condition, category encounter-diagnosis). The encounter is
found by its visit number (PV1-19); without one, by the patient and the admission time (PV1-44); with
neither, the message describes no encounter and only the Patient is written.

The episode of care: when PV1-50 (alternate visit id) carries the source's episode identifier (the
hospital provider spell, or the referral or episode number of a community or mental health service), an
EpisodeOfCare keyed by it, as the source's, is written with the encounter, and the Encounter refers to
it (`episodeOfCare`). Its status follows the event (`EPISODE_STATUS`: A05 planned, A03 finished, A11
cancelled, A13 active again, otherwise finished when PV1-45 gives a discharge time, else active), its
period is the encounter's, its patient the PID patient, its managing organisation the source's (by
ODS code) and its type the hospital service (PV1-10). Without PV1-50 no EpisodeOfCare is written.
"""

from __future__ import annotations

from typing import Any

from sharedcare.ingest.hl7v2 import datatypes as dt
from sharedcare.ingest.hl7v2 import patient as pid_map
from sharedcare.ingest.hl7v2.mapping import (
    Context,
    Mapped,
    Merge,
    Transaction,
    begin,
    location,
    mapper,
    recorded_at,
    visit_identifier,
)
from sharedcare.ingest.hl7v2.message import REQUIRED_FIELD_MISSING, Message, ParseError, Segment

TRIGGERS = ("A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A12", "A13", "A28", "A31",
            "A34", "A39", "A40")
PERSON_ONLY = frozenset({"A28", "A31"})
MERGES = frozenset({"A34", "A39", "A40"})
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# Table 0004 patient class to the v3 ActEncounterCode FHIR R4 uses for Encounter.class.
CLASS = {"E": ("EMER", "emergency"), "I": ("IMP", "inpatient encounter"), "O": ("AMB", "ambulatory"),
         "P": ("PRENC", "pre-admission"), "R": ("IMP", "inpatient encounter"), "B": ("IMP", "inpatient encounter"),
         "N": ("AMB", "ambulatory"), "U": ("AMB", "ambulatory")}
STATUS = {"A01": "in-progress", "A02": "in-progress", "A03": "finished", "A04": "in-progress", "A05": "planned",
          "A06": "in-progress", "A07": "in-progress", "A11": "cancelled", "A12": "in-progress",
          "A13": "in-progress"}
# The trigger to EpisodeOfCare.status (an A08 says what PV1 says: finished once discharged, else active).
EPISODE_STATUS = {"A01": "active", "A02": "active", "A03": "finished", "A04": "active", "A05": "planned",
                  "A06": "active", "A07": "active", "A11": "cancelled", "A12": "active", "A13": "active"}


@mapper("ADT", TRIGGERS)
def adt(msg: Message, ctx: Context) -> Mapped:
    tx, mapped = begin(msg)
    patient_url = pid_map.add(msg, ctx, tx, mapped, update=True)
    if msg.trigger in MERGES:
        _merges(msg, ctx, mapped, patient_url)
    elif msg.trigger not in PERSON_ONLY:
        pv1 = msg.first("PV1")
        if pv1 is not None:
            _encounter(msg, pv1, ctx, tx, mapped, patient_url)
    mapped.bundle = tx.bundle()
    return mapped


def _merges(msg: Message, ctx: Context, mapped: Mapped, survivor: str) -> None:
    """Each MRG names a record of this source that is now the PID patient (A40 may carry several)."""
    segments = msg.all("MRG")
    if not segments:
        raise ParseError("a merge message needs an MRG segment", REQUIRED_FIELD_MISSING, segment="MRG")
    for mrg in segments:
        olds = [i for i in (dt.identifier(rep, ctx.ods)[0] for rep in mrg[1].reps()) if i]
        if not olds:
            raise ParseError("MRG-1 names no prior patient identifier", REQUIRED_FIELD_MISSING, segment="MRG",
                             position=mrg.position, field_no=1)
        old = pid_map.key(olds)
        mapped.merges.append(Merge(old, survivor))


def _visit_identifier(pv1: Segment, ctx: Context, mapped: Mapped) -> dict[str, Any] | None:
    """The encounter's key: the visit number (PV1-19), else the patient and admission time."""
    visit = visit_identifier(pv1, ctx)
    if visit is not None:
        return visit
    admitted = pv1[44].comp(1)
    if admitted and mapped.patient_key:
        _, _, value = mapped.patient_key.partition("|")
        return {"system": f"{dt.LOCAL_ID_BASE}/{ctx.ods}/patient-admitted", "value": f"{value}@{admitted}"}
    return None


def _encounter(msg: Message, pv1: Segment, ctx: Context, tx: Transaction, mapped: Mapped, patient_url: str) -> None:
    ident = _visit_identifier(pv1, ctx, mapped)
    if ident is None:
        mapped.warnings.append("PV1: no visit number (PV1-19) or admission time (PV1-44): no encounter written")
        return
    trigger = msg.trigger
    patient_class = pv1[2].value.upper()
    code, display = CLASS.get(patient_class, ("AMB", "ambulatory"))
    start = dt.datetime_(pv1[44].comp(1))
    end = dt.datetime_(pv1[45].comp(1))
    status = STATUS.get(trigger) or ("finished" if end else "in-progress")
    if trigger == "A03" and end is None:
        end = recorded_at(msg)
    if trigger == "A13":
        end = None
    encounter: dict[str, Any] = {
        "resourceType": "Encounter", "identifier": [ident], "status": status,
        "class": {"system": ACT_CODE, "code": code, "display": display},
        "subject": {"reference": patient_url}, "serviceProvider": ctx.organisation()}
    admission_type = pv1[4].value
    if admission_type:
        encounter["type"] = [{"coding": [{"system": dt.hl7_table("0007"), "code": admission_type}]}]
    service = pv1[10].value
    service_type = {"coding": [{"system": dt.coding_system("", ctx.ods), "code": service}]} if service else None
    if service_type:
        encounter["serviceType"] = service_type
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        encounter["period"] = period
    participants = []
    for n, role in ((7, "ATND"), (8, "REF"), (9, "CON"), (17, "ADM")):
        for rep in pv1[n].reps():
            name = dt.practitioner_name(rep)
            ident_value = rep.comp(1).strip()
            if name is None and not ident_value:
                continue
            who: dict[str, Any] = {}
            if ident_value:
                who["identifier"] = {"system": f"{dt.LOCAL_ID_BASE}/{ctx.ods}/staff", "value": ident_value}
            if name:
                who["display"] = dt.display_name(name)
            participants.append({"type": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": role}]}],
                "individual": who})
    if participants:
        encounter["participant"] = participants
    hospitalization: dict[str, Any] = {}
    if pv1[14].value:
        hospitalization["admitSource"] = {"coding": [{"system": dt.hl7_table("0023"), "code": pv1[14].value}]}
    if pv1[36].value:
        hospitalization["dischargeDisposition"] = {"coding": [{"system": dt.hl7_table("0112"),
                                                               "code": pv1[36].value}]}
    if hospitalization:
        encounter["hospitalization"] = hospitalization
    locations = []
    here = location(pv1[3], ctx, tx, update=True)
    if here:
        locations.append({"location": {"reference": here},
                          "status": "completed" if status in ("finished", "cancelled") else
                          ("planned" if status == "planned" else "active")})
    if trigger == "A02":
        before = location(pv1[6], ctx, tx, update=True)
        if before and before != here:
            locations.append({"location": {"reference": before}, "status": "completed"})
    if locations:
        encounter["location"] = locations
    pv2 = msg.first("PV2")
    if pv2 is not None:
        reason = dt.codeable(pv2[3], ctx.ods)
        if reason:
            encounter["reasonCode"] = [reason]
    episode_url = _episode(msg, pv1, ctx, tx, patient_url, period, service_type)
    if episode_url:
        encounter["episodeOfCare"] = [{"reference": episode_url}]
    encounter_url = tx.put(encounter, ident)  # the diagnoses are added to it below
    diagnoses = []
    for dg1 in msg.all("DG1"):
        condition_url = _diagnosis(dg1, ctx, tx, patient_url, encounter_url, ident)
        if condition_url:
            diagnoses.append({"condition": {"reference": condition_url},
                              **({"rank": int(dg1[1].value)} if dg1[1].value.isdigit() else {})})
    if diagnoses:
        encounter["diagnosis"] = diagnoses


def episode_identifier(pv1: Segment, ctx: Context) -> dict[str, Any] | None:
    """The identifier of the episode PV1-50 (alternate visit id) names, as visit numbers are keyed: the
    CX's value under its `urn:oid:` system when it has one, else under the source's own episode
    numbers (`LOCAL_ID_BASE/{ods}/episode`); None when PV1-50 is empty."""
    episode, _ = dt.identifier(pv1[50], ctx.ods)
    if episode is None:
        return None
    system = episode["system"] if episode["system"].startswith("urn:oid:") else f"{dt.LOCAL_ID_BASE}/{ctx.ods}/episode"
    return {"system": system, "value": episode["value"]}


def _episode(msg: Message, pv1: Segment, ctx: Context, tx: Transaction, patient_url: str, period: dict[str, str],
             service_type: dict[str, Any] | None) -> str | None:
    """The EpisodeOfCare PV1-50 names, written as the source's; its fullUrl, or None without PV1-50."""
    ident = episode_identifier(pv1, ctx)
    if ident is None:
        return None
    status = EPISODE_STATUS.get(msg.trigger) or ("finished" if period.get("end") else "active")
    episode: dict[str, Any] = {"resourceType": "EpisodeOfCare", "identifier": [ident], "status": status}
    if service_type:
        episode["type"] = [{"coding": [dict(c) for c in service_type["coding"]]}]  # its own copy, not shared
    episode["patient"] = {"reference": patient_url}
    episode["managingOrganization"] = ctx.organisation()
    if period:
        episode["period"] = dict(period)
    return tx.put(episode, ident)


def _diagnosis(dg1: Segment, ctx: Context, tx: Transaction, patient_url: str, encounter_url: str,
               visit: dict[str, Any]) -> str | None:
    code = dt.codeable(dg1[3], ctx.ods)
    if code is None:
        text = dg1[4].text.strip()
        if not text:
            return None
        code = {"text": text}
    first = (code.get("coding") or [{}])[0]
    key = f"{visit['value']}/{first.get('system', '')}|{first.get('code', code.get('text', ''))}"
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                  "code": "encounter-diagnosis"}]}],
        "code": code, "subject": {"reference": patient_url}, "encounter": {"reference": encounter_url}}
    when = dt.datetime_(dg1[5].comp(1))
    if when:
        condition["recordedDate"] = when
    return tx.put(condition, {"system": f"{dt.LOCAL_ID_BASE}/{ctx.ods}/diagnosis", "value": key})

