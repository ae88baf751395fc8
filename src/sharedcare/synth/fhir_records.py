"""The FHIR R4 a source sends: GP practices' per-patient bundles, the ambulance service's incident
bundles, hospitals' discharge summaries (document bundles), cancer pathway bundles and free slots.

Ids are name-based UUIDs (the same person and event give the same id on every run). Every resource
carries the synthetic-data label (directory.synthetic_meta). Entries are PUT so a bundle can be sent
again without making copies.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sharedcare.synth import codes
from sharedcare.synth.directory import ODS, synthetic_meta
from sharedcare.synth.patients import NHS
from sharedcare.synth.providers import PROVIDERS
from sharedcare.synth.story import (
    Allergy,
    CancerPathway,
    EndOfLifePlan,
    Finding,
    Incident,
    Issue,
    Problem,
    Reading,
    Recorded,
    Vaccination,
    Visit,
)

LONDON = ZoneInfo("Europe/London")
NS = uuid.UUID("5b0a8c1e-3d0f-4c55-9a51-8c5ad6f1c2a7")
LOCAL = "https://sharedcare.example/Id/"  # + kind/source: a source's own identifiers
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
VACCINATION_PROCEDURE = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-VaccinationProcedure"
MILESTONE = "https://sharedcare.example/CodeSystem/cancer-pathway-milestone"
REFERRAL_TYPE = "https://sharedcare.example/CodeSystem/cancer-referral-type"
OUTCOME = "https://sharedcare.example/CodeSystem/ambulance-outcome"
# GP alerts, in a local code system until the national flag codes are verified (docs/synth.md).
ALERT = "https://sharedcare.example/CodeSystem/alert"
ALERTS = {"child_protection": "Child protection plan in place (CP-IS)",
          "reasonable_adjustment": "Reasonable adjustments needed (see the adjustment flag)"}
PROVIDER_NAMES = {p.code: p.name for p in PROVIDERS}
ALLERGY_CATEGORY = {"peanut": "food", "shellfish": "food", "egg": "food", "latex": "environment"}


def rid(*parts: str) -> str:
    """A stable id for the resource named by `parts`."""
    return str(uuid.uuid5(NS, "/".join(parts)))


def sct(c: codes.Code) -> dict[str, Any]:
    return {"coding": [{"system": codes.SNOMED, "code": c.code, "display": c.display}]}


def when(d: date | datetime) -> str:
    """A FHIR date, or a dateTime with London's offset (a time of day needs its time zone)."""
    if isinstance(d, datetime):
        return d.replace(tzinfo=LONDON).isoformat()
    return d.isoformat()


def entry(res: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{res['id']}", "resource": res,
            "request": {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}}


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": rid("bundle", *(r["id"] for r in resources[:2])), "meta": synthetic_meta(),
            "type": "transaction", "entry": [entry(r) for r in resources]}


def source_patient(rec: Recorded, kind: str, org_id: str) -> dict[str, Any]:
    """A source's own Patient record for the person (not the GP's): its local number, and the NHS
    number only when the source holds one."""
    identifiers: list[dict[str, Any]] = [{"system": f"{LOCAL}{kind}/{rec.source}", "value": rec.local_id}]
    if rec.nhs_number is not None:
        identifiers.insert(0, {"system": NHS, "value": rec.nhs_number})
    res: dict[str, Any] = {
        "resourceType": "Patient", "id": rid("patient", rec.source, rec.local_id), "meta": synthetic_meta(),
        "identifier": identifiers, "name": [{"use": "official", "family": rec.family, "given": [rec.given]}],
        "gender": rec.sex, "managingOrganization": {"reference": f"Organization/{org_id}"},
    }
    if rec.birth_date is not None:
        res["birthDate"] = rec.birth_date.isoformat()
    if rec.postcode is not None:
        res["address"] = [{"use": "home", "city": "London", "postalCode": rec.postcode, "country": "GB"}]
    return res


class GpRecord:
    """The resources of one patient's GP record, built against their Patient."""

    def __init__(self, patient: dict[str, Any], practice_code: str, practice_id: str) -> None:
        self.patient = patient
        self.subject = {"reference": f"Patient/{patient['id']}"}
        self.practice = practice_code
        self.org = {"reference": f"Organization/{practice_id}", "identifier": {"system": ODS, "value": practice_code}}
        self.resources: list[dict[str, Any]] = [patient]
        self.n = 0

    def add(self, res_type: str, body: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        res = {"resourceType": res_type, "id": rid("gp", self.practice, self.patient["id"], res_type, str(self.n)),
               "meta": synthetic_meta(), **body}
        self.resources.append(res)
        return res

    def problem(self, p: Problem) -> None:
        condition = codes.CONDITIONS[p.key]
        body: dict[str, Any] = {
            "clinicalStatus": _cc(CONDITION_CLINICAL, "resolved" if p.resolved else "active"),
            "verificationStatus": _cc(CONDITION_VERIFICATION, "confirmed"),
            "category": [_cc(CONDITION_CATEGORY, "problem-list-item")],
            "code": sct(condition.snomed), "subject": self.subject, "onsetDateTime": when(p.onset),
            "recordedDate": when(p.onset),
        }
        if p.resolved is not None:
            body["abatementDateTime"] = when(p.resolved)
        self.add("Condition", body)
        if p.resolved is not None and p.key in codes.RESOLVED:  # the QOF "resolved" code, its own entry
            self.add("Condition", {
                "clinicalStatus": _cc(CONDITION_CLINICAL, "resolved"),
                "verificationStatus": _cc(CONDITION_VERIFICATION, "confirmed"),
                "category": [_cc(CONDITION_CATEGORY, "problem-list-item")],
                "code": sct(codes.RESOLVED[p.key]), "subject": self.subject, "onsetDateTime": when(p.resolved),
                "abatementDateTime": when(p.resolved), "recordedDate": when(p.resolved)})

    def issue(self, i: Issue) -> None:
        m = codes.MEDICINES[i.key]
        body: dict[str, Any] = {
            "status": "active" if i.intent == "plan" else "completed", "intent": i.intent,
            "medicationCodeableConcept": {"coding": [{"system": codes.DMD, "code": m.dmd, "display": m.display}]},
            "subject": self.subject, "authoredOn": when(i.on), "requester": self.org,
            "courseOfTherapyType": _cc("http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy",
                                       "continuous" if i.intent == "plan" else "acute"),
            "dispenseRequest": {"quantity": {"value": i.quantity, "unit": m.unit}},
        }
        self.add("MedicationRequest", body)

    def reading(self, r: Reading) -> None:
        bp = codes.BLOOD_PRESSURE
        sys_code, dia_code = (bp["home_systolic"], bp["home_diastolic"]) if r.setting == "home" else \
            (bp["abpm_systolic"], bp["abpm_diastolic"]) if r.setting == "abpm" else (bp["systolic"], bp["diastolic"])
        self.add("Observation", {
            "status": "final", "category": [_cc(OBSERVATION_CATEGORY, "vital-signs")], "code": sct(bp["panel"]),
            "subject": self.subject, "effectiveDateTime": when(r.on), "performer": [self.org],
            "component": [{"code": sct(sys_code), "valueQuantity": _mmhg(r.systolic)},
                          {"code": sct(dia_code), "valueQuantity": _mmhg(r.diastolic)}]})

    def finding(self, f: Finding) -> None:
        body: dict[str, Any] = {"status": "final", "code": sct(codes.OBSERVATIONS[f.key]), "subject": self.subject,
                                "effectiveDateTime": when(f.on), "performer": [self.org]}
        if f.value is not None:
            body["valueQuantity"] = {"value": f.value, "unit": f.unit, "system": codes.UCUM, "code": f.unit}
        self.add("Observation", body)

    def allergy(self, a: Allergy) -> None:
        self.add("AllergyIntolerance", {
            "clinicalStatus": _cc(ALLERGY_CLINICAL, "active"), "verificationStatus": _cc(ALLERGY_VERIFICATION,
                                                                                         "confirmed"),
            "type": "allergy", "category": [ALLERGY_CATEGORY.get(a.substance, "medication")],
            "criticality": "high" if a.severe else "low", "code": sct(codes.ALLERGENS[a.substance]),
            "patient": self.subject, "recordedDate": when(a.recorded),
            "reaction": [{"manifestation": [sct(codes.REACTIONS[a.reaction])],
                          "severity": "severe" if a.severe else "mild"}]})

    def vaccination(self, v: Vaccination) -> None:
        procedure = codes.IMMUNISATION_PROCEDURES[v.dose]
        if v.on is not None and v.product is not None:
            product = codes.VACCINES[v.product]
            body: dict[str, Any] = {
                "extension": [{"url": VACCINATION_PROCEDURE, "valueCodeableConcept": sct(procedure)}],
                "status": "completed",
                "vaccineCode": {"coding": [{"system": codes.DMD, "code": product.code, "display": product.display}]},
                "patient": self.subject, "occurrenceDateTime": when(v.on), "primarySource": True,
                "performer": [{"actor": self.org}]}
            number = v.dose.rsplit("_", 1)[-1]
            if number.isdigit():
                body["protocolApplied"] = [{"doseNumberPositiveInt": int(number)}]
            self.add("Immunization", body)
        elif v.refusal is not None and v.refused_on is not None:
            self.add("Immunization", {
                "extension": [{"url": VACCINATION_PROCEDURE, "valueCodeableConcept": sct(procedure)}],
                "status": "not-done", "statusReason": sct(codes.NOT_GIVEN[v.refusal]),
                "vaccineCode": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                            "code": "not-applicable"}], "text": procedure.display},
                "patient": self.subject, "occurrenceDateTime": when(v.refused_on), "primarySource": True})

    def alert(self, key: str, on: date) -> None:
        code = {"coding": [{"system": ALERT, "code": key, "display": ALERTS[key]}], "text": ALERTS[key]}
        self.add("Flag", {"status": "active", "code": code, "subject": self.subject,
                          "period": {"start": when(on)}, "author": self.org})

    def referral(self, p: CancerPathway, provider_id: str) -> None:
        self.add("ServiceRequest", {
            "status": "completed" if p.first_seen else "active", "intent": "order", "priority": "urgent",
            "category": [{"coding": [{"system": REFERRAL_TYPE, "code": "urgent-suspected-cancer",
                                      "display": "Urgent suspected cancer referral"}]}],
            "code": {"text": f"Urgent suspected cancer referral: {p.site}"}, "subject": self.subject,
            "authoredOn": when(p.referred), "requester": self.org,
            "performer": [{"reference": f"Organization/{provider_id}"}]})

    def end_of_life(self, plan: EndOfLifePlan) -> None:
        self.add("CarePlan", {
            "status": "active", "intent": "plan", "title": "End of life care plan",
            "description": f"What matters to me: {plan.what_matters}. Preferred place of death: "
                           f"{plan.preferred_place.replace('-', ' ')}.",
            "subject": self.subject, "created": when(plan.recorded),
            "period": {"start": when(plan.recorded), "end": when(plan.review_on)}, "author": self.org})
        self.finding(Finding("dnacpr" if plan.cpr == "dnacpr" else "for_cpr", plan.recorded))


def _cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _mmhg(v: int) -> dict[str, Any]:
    return {"value": v, "unit": "mmHg", "system": codes.UCUM, "code": "mm[Hg]"}


def ambulance_bundle(rec: Recorded, incident: Incident, service_id: str, destination_id: str | None) -> dict[str, Any]:
    """One incident as the ambulance service sends it, soon after the crew closes it."""
    patient = source_patient(rec, "ambulance-patient", service_id)
    subject = {"reference": f"Patient/{patient['id']}"}
    enc_id = rid("ambulance", incident.incident_id)
    encounter: dict[str, Any] = {
        "resourceType": "Encounter", "id": enc_id, "meta": synthetic_meta(),
        "identifier": [{"system": f"{LOCAL}ambulance-incident/{rec.source}", "value": incident.incident_id}],
        "status": "finished", "class": {"system": ACT_CODE, "code": "FLD", "display": "field"},
        "type": [sct(codes.ENCOUNTER_TYPES["ambulance_attendance"])], "subject": subject,
        "period": {"start": when(incident.called), "end": when(incident.called + timedelta(minutes=75))},
        "reasonCode": [sct(codes.CONDITIONS[incident.impression].snomed)],
        "serviceProvider": {"reference": f"Organization/{service_id}"},
        "hospitalization": {"dischargeDisposition": {"coding": [{"system": OUTCOME, "code": incident.outcome}]}},
    }
    if destination_id is not None and incident.destination is not None:
        encounter["hospitalization"]["destination"] = {
            "identifier": {"system": ODS, "value": incident.destination}, "display": incident.destination}
    resources = [patient, encounter]
    vitals = (("news2", incident.news2, "{score}"), ("heart_rate", incident.heart_rate, "/min"),
              ("respiratory_rate", incident.respiratory_rate, "/min"), ("oxygen_saturation", incident.spo2, "%"))
    for key, value, unit in vitals:
        if value is None:
            continue
        resources.append({
            "resourceType": "Observation", "id": rid("ambulance", incident.incident_id, key), "meta": synthetic_meta(),
            "status": "final", "category": [_cc(OBSERVATION_CATEGORY, "vital-signs" if key != "news2" else "survey")],
            "code": sct(codes.OBSERVATIONS[key]), "subject": subject, "encounter": {"reference": f"Encounter/{enc_id}"},
            "effectiveDateTime": when(incident.called + timedelta(minutes=25)),
            "valueQuantity": {"value": value, "unit": unit, "system": codes.UCUM, "code": unit}})
    return transaction(resources)


def discharge_document(rec: Recorded, visit: Visit, trust_id: str) -> dict[str, Any]:
    """A hospital discharge summary as a FHIR document (Composition first)."""
    assert visit.left is not None
    patient = source_patient(rec, "hospital-patient", trust_id)
    subject = {"reference": f"urn:uuid:{patient['id']}"}
    org = {"reference": f"urn:uuid:{trust_id}", "display": PROVIDER_NAMES[visit.provider]}
    condition = codes.CONDITIONS[visit.diagnosis]
    enc_id = rid("visit", visit.provider, visit.visit_id)
    cond_id = rid("visit", visit.provider, visit.visit_id, "diagnosis")
    encounter = {
        "resourceType": "Encounter", "id": enc_id, "meta": synthetic_meta(),
        "identifier": [{"system": f"{LOCAL}visit/{visit.provider}", "value": visit.visit_id}], "status": "finished",
        "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"}, "subject": subject,
        "period": {"start": when(visit.admitted or visit.arrived), "end": when(visit.left)},
        "serviceProvider": {"reference": f"Organization/{trust_id}"},
    }
    diagnosis = {
        "resourceType": "Condition", "id": cond_id, "meta": synthetic_meta(),
        "clinicalStatus": _cc(CONDITION_CLINICAL, "active"), "verificationStatus": _cc(CONDITION_VERIFICATION,
                                                                                       "confirmed"),
        "category": [_cc(CONDITION_CATEGORY, "encounter-diagnosis")],
        "code": {"coding": [{"system": codes.SNOMED, "code": condition.snomed.code,
                             "display": condition.snomed.display},
                            {"system": codes.ICD10, "code": condition.icd10.code, "display": condition.icd10.display}]},
        "subject": subject, "encounter": {"reference": f"urn:uuid:{enc_id}"},
        "recordedDate": when(visit.left)}
    stay = f"Admitted {visit.arrived:%d %b %Y}, discharged {visit.left:%d %b %Y}" + \
           (" (died in hospital)" if visit.disposition == "died" else "")
    composition = {
        "resourceType": "Composition", "id": rid("document", visit.provider, visit.visit_id), "meta": synthetic_meta(),
        "status": "final", "type": sct(codes.Code("373942005", "Discharge summary")), "subject": subject,
        "encounter": {"reference": f"urn:uuid:{enc_id}"}, "date": when(visit.left),
        "author": [org], "title": "Discharge summary",
        "custodian": {"reference": f"urn:uuid:{trust_id}"},
        "section": [{"title": "Diagnosis", "code": sct(codes.Code("1077881000000105", "Diagnoses")),
                     "text": _narrative(condition.snomed.display), "entry": [{"reference": f"urn:uuid:{cond_id}"}]},
                    {"title": "Hospital stay", "text": _narrative(stay)}]}
    organization = {"resourceType": "Organization", "id": trust_id, "meta": synthetic_meta(),
                    "identifier": [{"system": ODS, "value": visit.provider}], "name": PROVIDER_NAMES[visit.provider]}
    resources = [composition, patient, encounter, diagnosis, organization]
    return {"resourceType": "Bundle", "id": rid("document-bundle", visit.provider, visit.visit_id),
            "meta": synthetic_meta(),
            "identifier": {"system": f"{LOCAL}document/{visit.provider}", "value": visit.visit_id},
            "type": "document", "timestamp": when(visit.left),
            "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources]}


def _narrative(text: str) -> dict[str, Any]:
    safe = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{safe}</p></div>'}


def cancer_bundle(rec: Recorded, p: CancerPathway, provider: str, provider_id: str,
                  other_id: str | None) -> dict[str, Any]:
    """What one trust records of a cancer pathway: its episode (by the patient pathway identifier)
    and the milestones that happened there."""
    patient = source_patient(rec, "hospital-patient", provider_id)
    subject = {"reference": f"Patient/{patient['id']}"}
    org = {"reference": f"Organization/{provider_id}"}
    first = provider == p.first_provider
    treating = provider == (p.treating_provider or p.first_provider)
    start = p.received if first else (p.transfer_received or p.received)
    ep_id = rid("cancer", provider, p.pathway_id)
    episode_ref = {"reference": f"EpisodeOfCare/{ep_id}"}
    finished = (treating and p.treated is not None) or (first and not treating and p.transfer_sent is not None) or \
        (p.told is not None and p.cancer is None)
    history = [{"status": "active", "period": {"start": when(start)}}]
    episode: dict[str, Any] = {
        "resourceType": "EpisodeOfCare", "id": ep_id, "meta": synthetic_meta(),
        "identifier": [{"system": "https://sharedcare.example/Id/cancer-patient-pathway", "value": p.pathway_id}],
        "status": "finished" if finished else "active", "statusHistory": history,
        "type": [{"coding": [{"system": MILESTONE, "code": "cancer-62-day", "display": "Cancer 62-day pathway"}]}],
        "patient": subject, "managingOrganization": org, "period": {"start": when(start)}}
    resources: list[dict[str, Any]] = [patient, episode]

    def milestone(code: str, display: str, on: date | None, res_type: str = "Procedure") -> None:
        if on is None:
            return
        body: dict[str, Any] = {"resourceType": res_type, "id": rid("cancer", provider, p.pathway_id, code),
                                "meta": synthetic_meta(), "subject": subject}
        concept = {"coding": [{"system": MILESTONE, "code": code, "display": display}]}
        if res_type == "Procedure":
            body |= {"status": "completed", "code": concept, "performedDateTime": when(on), "performer": [
                {"actor": org}], "extension": [{"url": "https://sharedcare.example/StructureDefinition/episode",
                                               "valueReference": episode_ref}]}
        elif res_type == "Encounter":
            body |= {"status": "finished", "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
                     "type": [concept], "period": {"start": when(datetime.combine(on, time(10)))},
                     "episodeOfCare": [episode_ref], "serviceProvider": org}
        else:  # Observation: a milestone that is a statement (FDS end)
            body |= {"status": "final", "code": concept, "effectiveDateTime": when(on), "performer": [org]}
        resources.append(body)

    if first:
        milestone("first-seen", "First seen", p.first_seen, "Encounter")
        milestone("diagnostic-test", "Diagnostic test", p.diagnostic)
        if p.told is not None:
            code = "fds-end-diagnosed" if p.cancer else "fds-end-ruled-out"
            milestone(code, "Cancer diagnosed, patient told" if p.cancer else "Cancer ruled out, patient told",
                      p.told, "Observation")
        if p.transfer_sent is not None and p.treating_provider and other_id:
            resources.append({
                "resourceType": "ServiceRequest", "id": rid("cancer", provider, p.pathway_id, "ipt"),
                "meta": synthetic_meta(), "status": "completed" if p.transfer_received else "active",
                "intent": "order", "priority": "urgent",
                "code": {"coding": [{"system": MILESTONE, "code": "inter-provider-transfer",
                                     "display": "Inter-provider transfer"}]},
                "subject": subject, "authoredOn": when(p.transfer_sent), "requester": org,
                "performer": [{"reference": f"Organization/{other_id}"}],
                "identifier": [{"system": "https://sharedcare.example/Id/cancer-patient-pathway",
                                "value": p.pathway_id}]})
    if p.cancer is not None and (treating or first):
        condition = codes.CONDITIONS[p.cancer]
        resources.append({
            "resourceType": "Condition", "id": rid("cancer", provider, p.pathway_id, "diagnosis"),
            "meta": synthetic_meta(), "clinicalStatus": _cc(CONDITION_CLINICAL, "active"),
            "verificationStatus": _cc(CONDITION_VERIFICATION, "confirmed"),
            "category": [_cc(CONDITION_CATEGORY, "encounter-diagnosis")],
            "code": {"coding": [{"system": codes.SNOMED, "code": condition.snomed.code,
                                 "display": condition.snomed.display},
                                {"system": codes.ICD10, "code": condition.icd10.code,
                                 "display": condition.icd10.display}]},
            "subject": subject, "recordedDate": when(p.told or p.received)})
    if treating:
        if p.transfer_received is not None and not first:
            milestone("transfer-received", "Inter-provider transfer received", p.transfer_received, "Observation")
        milestone("decision-to-treat", "Decision to treat", p.decision_to_treat, "Observation")
        milestone("first-treatment", "First definitive treatment", p.treated)
    return transaction(resources)


def slots_bundle(trust: str, trust_id: str, specialties: tuple[str, ...], as_of: date, per_clinic: int,
                 seed: int) -> dict[str, Any]:
    """Free slots in a trust's clinics over the six weeks after `as_of`, for patients to book."""
    resources: list[dict[str, Any]] = []
    for specialty in specialties:
        schedule_id = rid("schedule", str(seed), trust, specialty)
        resources.append({"resourceType": "Schedule", "id": schedule_id, "meta": synthetic_meta(), "active": True,
                          "serviceType": [{"text": specialty}],
                          "actor": [{"reference": f"Organization/{trust_id}"}],
                          "planningHorizon": {"start": when(as_of), "end": when(as_of + timedelta(days=42))}})
        for i in range(per_clinic):
            day = as_of + timedelta(days=1 + (i * 3 + len(specialty)) % 41)
            if day.weekday() >= 5:
                day += timedelta(days=7 - day.weekday())
            start = datetime.combine(day, time(9 + i % 7, 30 if i % 2 else 0))
            resources.append({"resourceType": "Slot", "id": rid("slot", str(seed), trust, specialty, str(i)),
                              "meta": synthetic_meta(), "schedule": {"reference": f"Schedule/{schedule_id}"},
                              "status": "free", "start": when(start), "end": when(start + timedelta(minutes=20)),
                              "serviceType": [{"text": specialty}]})
    return transaction(resources)
