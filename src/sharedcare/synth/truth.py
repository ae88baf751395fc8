"""The truth files the pathfinders are scored against (DIR/truth/*.csv), computed from each
person's story, not from the feeds, so a test can check that the feeds say the same thing.

- asthma.csv: everyone ever coded with asthma; `on_register` follows QOF AST005 (age 6 or over,
  latest asthma code later than latest resolved code, an asthma medicine issued in the last year,
  alive), with the last year's reliever, preventer and oral steroid issues and emergency care;
- hypertension.csv: adults diagnosed or with a blood pressure reading: `diagnosed` (on the register),
  the latest clinic reading (the lowest of its day), and `undiagnosed_high` (not diagnosed and the
  latest clinic reading 140/90 or more);
- immunisations.csv: every routine dose due by the as-of date for each child, given or not;
- cancer.csv: every urgent suspected cancer pathway with its clock days (FDS, 62-day, 31-day) and
  any inter-provider transfer.
"""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

from sharedcare.synth import codes
from sharedcare.synth.clinical import age_on
from sharedcare.synth.people import Person
from sharedcare.synth.story import Story

ASTHMA_CODES = frozenset({"asthma", "acute_asthma_exacerbation"})
ASTHMA_MEDICINES = frozenset({"saba", "ics", "ics_formoterol", "ics_laba", "laba", "ltra"})
PREVENTERS = frozenset({"ics", "ics_formoterol", "ics_laba"})
FIELDS = {
    "asthma": ("person_id", "practice", "age", "on_register", "saba_issues_12m", "ics_issues_12m",
               "steroid_courses_12m", "asthma_attendances_12m", "asthma_admissions_12m"),
    "hypertension": ("person_id", "practice", "age", "ethnicity", "diagnosed", "clinic_date", "systolic",
                     "diastolic", "undiagnosed_high"),
    "immunisations": ("person_id", "practice", "birth_date", "dose", "due", "given_on", "product", "status"),
    "cancer": ("pathway_id", "person_id", "practice", "site", "referred", "received", "first_provider", "first_seen",
               "told", "outcome", "fds_days", "transfer_sent", "transfer_received", "treating_provider",
               "decision_to_treat", "treated", "days_62", "days_31"),
}


class Truth:
    def __init__(self, folder: Path, as_of: date) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.as_of = as_of
        self.year_ago = as_of - timedelta(days=365)
        self.files: list[IO[str]] = []
        self.writers: dict[str, Any] = {}
        for name, fields in FIELDS.items():
            f = (folder / f"{name}.csv").open("w", encoding="utf-8", newline="")
            self.files.append(f)
            self.writers[name] = csv.writer(f, lineterminator="\n")
            self.writers[name].writerow(fields)

    def close(self) -> None:
        for f in self.files:
            f.close()

    def person(self, p: Person, s: Story) -> None:
        age = age_on(p.birth_date, self.as_of)
        alive = p.died_on is None
        self._asthma(p, s, age, alive)
        self._hypertension(p, s, age, alive)
        for v in s.vaccinations:
            status = "given" if v.on else "declined" if v.refusal and v.refusal != "dna_child_immunisation" else \
                "did-not-attend" if v.refusal else "not-given"
            self.writers["immunisations"].writerow((p.person_id, p.practice, p.birth_date.isoformat(), v.dose,
                                                    v.due.isoformat(), date_cell(v.on), v.product or "", status))
        for c in s.pathways:
            outcome = "" if c.told is None else "cancer" if c.cancer else "ruled-out"
            self.writers["cancer"].writerow((
                c.pathway_id, p.person_id, p.practice, c.site, c.referred.isoformat(), c.received.isoformat(),
                c.first_provider, date_cell(c.first_seen), date_cell(c.told), outcome, _days(c.received, c.told),
                date_cell(c.transfer_sent), date_cell(c.transfer_received), c.treating_provider or "",
                date_cell(c.decision_to_treat),
                date_cell(c.treated), _days(c.received, c.treated), _days(c.decision_to_treat, c.treated)))

    def _asthma(self, p: Person, s: Story, age: int, alive: bool) -> None:
        coded = [x for x in s.problems if x.key in ASTHMA_CODES]
        if not coded:
            return
        latest = max(x.onset for x in coded)
        resolved = max((x.resolved for x in s.problems if x.key == "asthma" and x.resolved), default=None)
        issues = [i for i in s.issues if i.intent == "order" and i.on > self.year_ago]
        groups = [codes.MEDICINES[i.key].group for i in issues]
        treated = any(g in ASTHMA_MEDICINES for g in groups)
        on_register = alive and age >= 6 and (resolved is None or latest > resolved) and treated
        emergencies = [v for v in s.visits if v.diagnosis == "acute_asthma_exacerbation"
                       and v.arrived.date() > self.year_ago]
        self.writers["asthma"].writerow((
            p.person_id, p.practice, age, int(on_register), groups.count("saba"),
            sum(g in PREVENTERS for g in groups), groups.count("ocs"), len(emergencies),
            sum(v.admitted is not None for v in emergencies)))

    def _hypertension(self, p: Person, s: Story, age: int, alive: bool) -> None:
        if age < 18 or not alive:
            return
        diagnosed = any(x.key == "essential_hypertension" and x.resolved is None for x in s.problems)
        clinic = [r for r in s.readings if r.setting == "clinic"]
        if not diagnosed and not clinic:
            return
        on = max((r.on for r in clinic), default=None)
        day = [r for r in clinic if r.on == on]
        systolic = min((r.systolic for r in day), default=None)
        diastolic = min((r.diastolic for r in day), default=None)
        high = not diagnosed and systolic is not None and diastolic is not None and (systolic >= 140 or diastolic >= 90)
        self.writers["hypertension"].writerow((p.person_id, p.practice, age, p.ethnicity, int(diagnosed), date_cell(on),
                                               "" if systolic is None else systolic,
                                               "" if diastolic is None else diastolic, int(high)))


def date_cell(d: date | None) -> str:
    """A date as a CSV cell: ISO 8601, or empty when there is none."""
    return "" if d is None else d.isoformat()


def _days(start: date | None, end: date | None) -> str:
    return "" if start is None or end is None else str((end - start).days)
