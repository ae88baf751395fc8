"""Writes each person's story as every source that saw them would send it, and the truth about it.

Layout under DIR/feeds (one file per sending organisation, so each feed can be replayed as its own):
- gp/<practice ODS>.ndjson: one FHIR transaction Bundle per patient (the practice's whole record);
- hospital/<trust ODS>.hl7: HL7 v2.4 batch file of ADT (A01 A02 A03 A04 A08 A31 A40), ORU^R01 and SIU;
- hospital/<trust ODS>.ndjson: FHIR bundles: discharge summaries (documents), cancer pathway
  records (transactions) and, first, the trust's free outpatient slots;
- mental-health/<trust ODS>.hl7: HL7 v2.4 ADT of crisis contacts and admissions;
- ambulance/<ODS>.ndjson: one FHIR transaction Bundle per incident;
- 111/<YYYY-MM-DD>.csv: the NHS 111 service's daily batch of calls;
- social-care/<council GSS>.csv: each council's extract of care packages and plans.
Within a file, messages come person by person, in time order for each person (what a per-patient
ordered replay needs; a time-merged replay can sort on the event times they carry).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

from sharedcare.synth import fhir_records, hl7v2, identity, truth
from sharedcare.synth.clinical import SPECIALTIES, Care, Ids
from sharedcare.synth.directory import Directory
from sharedcare.synth.patients import gp_patient
from sharedcare.synth.people import Person
from sharedcare.synth.providers import PROVIDERS
from sharedcare.synth.story import Recorded, Story, Visit
from sharedcare.synth.truth import date_cell

AMBULANCE = "RRU"
NHS111 = "Y111L"
UNKNOWN_REGISTRATION = 0.5  # of ED patients arriving without an NHS number: registered as unknown, merged later
CALL_FIELDS = ("call_id", "call_time", "case_ref", "nhs_number", "given_name", "family_name", "birth_date", "sex",
               "postcode", "symptom_group", "disposition", "ambulance_incident")
CARE_FIELDS = ("case_id", "service_id", "nhs_number", "given_name", "family_name", "birth_date", "sex", "postcode",
               "service", "start_date", "end_date", "hours_per_week", "key_worker", "team")
SOURCE_FIELDS = ("person_id", "kind", "source", "local_id", "nhs_number", "nhs_status", "given", "family",
                 "birth_date", "postcode", "variations", "merged_into")


def _json(res: dict[str, Any]) -> str:
    return json.dumps(res, ensure_ascii=False, separators=(",", ":")) + "\n"


class Feeds:
    """Every source's output files, open while the population is written (bounded by the number of
    organisations and days, not people)."""

    def __init__(self, out: Path, found: Directory, as_of: date, seed: int, people: int) -> None:
        self.out, self.found, self.as_of, self.seed = out, found, as_of, seed
        self.created = datetime.combine(as_of, time(2))
        self.files: dict[Path, IO[str]] = {}
        self.csvs: dict[Path, Any] = {}
        self.batches: dict[Path, hl7v2.BatchFile] = {}
        self.local = Ids()
        self.control = Ids()
        self.care = Care.build()
        self.kinds = {p.code: p.kind for p in PROVIDERS}
        self.gp_seq: dict[str, int] = {}
        self.truth = truth.Truth(out / "truth", as_of)
        self.sources = self._csv(out / "truth" / "source-records.csv", SOURCE_FIELDS)
        for p in PROVIDERS:  # each trust's file opens with its free slots
            if p.kind == "acute":
                per_clinic = max(4, people // 2000)
                self._text(out / "feeds" / "hospital" / f"{p.code}.ndjson").write(_json(fhir_records.slots_bundle(
                    p.code, found.org_ids[p.code], SPECIALTIES, as_of, per_clinic, seed)))

    # --- files -----------------------------------------------------------------------------------
    def _text(self, path: Path) -> IO[str]:
        f = self.files.get(path)
        if f is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = self.files[path] = path.open("w", encoding="utf-8", newline="\n")
        return f

    def _csv(self, path: Path, fields: tuple[str, ...]) -> Any:
        writer = self.csvs.get(path)
        if writer is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = self.files[path] = path.open("w", encoding="utf-8", newline="")
            writer = self.csvs[path] = csv.writer(f, lineterminator="\n")
            writer.writerow(fields)
        return writer

    def _hl7(self, folder: str, provider: str) -> hl7v2.BatchFile:
        path = self.out / "feeds" / folder / f"{provider}.hl7"
        batch = self.batches.get(path)
        if batch is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            batch = self.batches[path] = hl7v2.BatchFile(path, provider, APPLICATION[folder], self.created)
        return batch

    def close(self) -> None:
        for batch in self.batches.values():
            batch.close()
        for f in self.files.values():
            f.close()
        self.truth.close()

    # --- one person --------------------------------------------------------------------------------
    def write(self, person: Person, story: Story) -> None:
        self.truth.person(person, story)
        seen: dict[str, Recorded] = {}

        def rec(kind: str, source: str) -> Recorded:
            if source not in seen:
                rng = random.Random(f"identity:{self.seed}:{person.person_id}:{source}")  # noqa: S311 - synthetic
                seen[source] = identity.recorded(person, kind, source, self.local.next(LOCAL_PREFIX[kind] + source, 7),
                                                 rng)
                self._source_row(person.person_id, kind, seen[source])
            return seen[source]

        self._gp(person, story)
        self._hospitals(person, story, rec)
        for incident in sorted(story.incidents, key=lambda i: i.called):
            r = rec("ambulance", AMBULANCE)
            destination = self.found.org_ids.get(incident.destination) if incident.destination else None
            self._text(self.out / "feeds" / "ambulance" / f"{AMBULANCE}.ndjson").write(_json(
                fhir_records.ambulance_bundle(r, incident, self.found.org_ids[AMBULANCE], destination)))
        for call in sorted(story.calls, key=lambda c: c.called):
            r = rec("nhs111", NHS111)
            writer = self._csv(self.out / "feeds" / "111" / f"{call.called.date().isoformat()}.csv", CALL_FIELDS)
            writer.writerow((call.call_id, fhir_records.when(call.called), r.local_id, r.nhs_number or "", r.given,
                             r.family, date_cell(r.birth_date), r.sex, r.postcode or "", call.symptom, call.disposition,
                             call.incident_id or ""))
        for package in story.packages:
            r = rec("social-care", package.council)
            writer = self._csv(self.out / "feeds" / "social-care" / f"{package.council}.csv", CARE_FIELDS)
            writer.writerow((r.local_id, package.case_id, r.nhs_number or "", r.given, r.family,
                             date_cell(r.birth_date), r.sex, r.postcode or "", package.service,
                             package.start.isoformat(), date_cell(package.end),
                             "" if package.hours_per_week is None else f"{package.hours_per_week:g}",
                             package.key_worker, package.team))

    def _source_row(self, person_id: str, kind: str, r: Recorded, merged_into: str = "") -> None:
        self.sources.writerow((person_id, kind, r.source, r.local_id, r.nhs_number or "", r.nhs_status, r.given,
                               r.family, date_cell(r.birth_date), r.postcode or "", ";".join(r.variations),
                               merged_into))

    def _gp(self, person: Person, story: Story) -> None:
        seq = self.gp_seq[person.practice] = self.gp_seq.get(person.practice, 0) + 1
        practice_id = self.found.org_ids[person.practice]
        patient = gp_patient(person, practice_id, seq)
        self._source_row(person.person_id, "gp", Recorded(
            person.practice, str(seq), person.nhs_number, "correct", person.given, person.family, person.birth_date,
            person.sex, person.postcode))
        record = fhir_records.GpRecord(patient, person.practice, practice_id)
        for p in story.problems:
            record.problem(p)
        for i in story.issues:
            record.issue(i)
        for r in story.readings:
            record.reading(r)
        for f in story.findings:
            record.finding(f)
        for a in story.allergies:
            record.allergy(a)
        for v in story.vaccinations:
            record.vaccination(v)
        for key in story.alerts:
            record.alert(key, min(self.as_of, person.died_on or self.as_of))
        for pathway in story.pathways:
            record.referral(pathway, self.found.org_ids[pathway.first_provider])
        if story.plan is not None:
            record.end_of_life(story.plan)
        self._text(self.out / "feeds" / "gp" / f"{person.practice}.ndjson").write(
            _json(fhir_records.transaction(record.resources)))

    def _hospitals(self, person: Person, story: Story, rec: Callable[[str, str], Recorded]) -> None:
        messages: dict[tuple[str, str], list[str]] = {}  # (folder, provider) -> this person's messages

        def send(folder: str, provider: str, items: list[str]) -> None:
            messages.setdefault((folder, provider), []).extend(items)

        for visit in story.visits:
            folder = "mental-health" if visit.kind.startswith("mh-") else "hospital"
            kind = "mental-health" if folder == "mental-health" else "hospital"
            r = rec(kind, visit.provider)
            if folder == "hospital" and visit.kind == "emergency" and r.nhs_number is None and \
                    visit.left is not None and _chance(self.seed, visit.visit_id, UNKNOWN_REGISTRATION):
                send(folder, visit.provider, self._unknown(person, r, visit))
            else:
                send(folder, visit.provider, hl7v2.adt_messages(r, visit, APPLICATION[folder], self._control(
                    visit.provider)))
            if folder == "hospital" and visit.admitted is not None and visit.left is not None:
                self._text(self.out / "feeds" / "hospital" / f"{visit.provider}.ndjson").write(_json(
                    fhir_records.discharge_document(r, visit, self.found.org_ids[visit.provider])))
        for report in story.labs:
            r = rec("hospital", report.provider)
            send("hospital", report.provider, [hl7v2.oru_message(r, report, APPLICATION["hospital"],
                                                                 self._control(report.provider))])
        for appt in story.appointments:
            r = rec("hospital", appt.provider)
            send("hospital", appt.provider, hl7v2.siu_messages(r, appt, APPLICATION["hospital"],
                                                               self._control(appt.provider)))
        for pathway in story.pathways:
            providers = [pathway.first_provider]
            if pathway.treating_provider and pathway.treating_provider != pathway.first_provider and \
                    pathway.transfer_received is not None:
                providers.append(pathway.treating_provider)
            for provider in providers:
                other = pathway.treating_provider if provider == pathway.first_provider else pathway.first_provider
                self._text(self.out / "feeds" / "hospital" / f"{provider}.ndjson").write(_json(
                    fhir_records.cancer_bundle(rec("hospital", provider), pathway, provider,
                                               self.found.org_ids[provider],
                                               self.found.org_ids.get(other) if other else None)))
        if person.moved_on is not None:  # trusts that know the new address send an update
            for (folder, provider), items in messages.items():
                r = rec("mental-health" if folder == "mental-health" else "hospital", provider)
                when = datetime.combine(person.moved_on + timedelta(days=10), time(11))
                if "old-address" not in r.variations and when.date() <= self.as_of:
                    items.append(hl7v2.a31_message(r, when, APPLICATION[folder], self._control(provider)))
        for (folder, provider), items in messages.items():
            batch = self._hl7(folder, provider)
            for message in sorted(items, key=_sent_at):
                batch.write(message)

    def _unknown(self, person: Person, r: Recorded, visit: Visit) -> list[str]:
        """An emergency patient registered as unknown, identified after discharge: the temporary
        record is merged into the patient's own (A40)."""
        temp = Recorded(r.source, self.local.next(f"U{r.source}", 7), None, "missing", "UNKNOWN", "UNKNOWN", None,
                        person.sex, None, ("unknown-patient",))
        self._source_row(person.person_id, "hospital", temp, merged_into=r.local_id)
        control = self._control(visit.provider)
        out = hl7v2.adt_messages(temp, visit, APPLICATION["hospital"], control)
        assert visit.left is not None
        merged = visit.left + timedelta(hours=20)
        if merged.date() <= self.as_of:
            out.append(hl7v2.a40_message(r, temp.local_id, merged, APPLICATION["hospital"], control))
        return out

    def _control(self, provider: str) -> Any:
        return lambda: self.control.next(provider, 9)


def _sent_at(message: str) -> str:
    return message.split("|", 7)[6]  # MSH-7, YYYYMMDDHHMMSS: sorts as time


def _chance(seed: int, key: str, p: float) -> bool:
    return random.Random(f"{seed}:{key}").random() < p  # noqa: S311 - reproducible synthetic choice


APPLICATION = {"hospital": "PAS", "mental-health": "MHPAS"}
LOCAL_PREFIX = {"hospital": "", "mental-health": "", "ambulance": "P", "nhs111": "C", "social-care": "P"}
