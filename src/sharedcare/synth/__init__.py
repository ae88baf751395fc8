"""Synthetic London: organisations, people and per-source feeds with ground truth (issue 4).

So far: the directory of organisations and staff (`directory.py`) and the people (`people.py`) with
their GP practices' Patient records, written by `sharedcare synth`. Clinical content, the other feeds
and the rest of the truth files come next (docs/synth.md says what exists).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from datetime import date
from pathlib import Path

from sharedcare.synth import directory
from sharedcare.synth.patients import gp_patient
from sharedcare.synth.people import Person
from sharedcare.synth.people import people as generate_people

DEFAULT_AS_OF = date(2026, 4, 1)  # fixed, never "today": the same arguments give the same bytes
DEFAULT_SEED = 1
TYPES = ("Organization", "Location", "HealthcareService", "Practitioner", "PractitionerRole")


def generate(people: int, seed: int, as_of: date, out: Path) -> dict[str, int]:
    """Write the synthetic data for `people` people under `out`; counts of what was written."""
    if people < 1:
        raise ValueError("the population must have at least one person")
    found = directory.build(people, seed)
    target = out / "directory"
    target.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for res_type in TYPES:
        with (target / f"{res_type}.ndjson").open("w", encoding="utf-8", newline="\n") as f:
            n = 0
            for res in found.of_type(res_type):
                f.write(json.dumps(res, ensure_ascii=False, separators=(",", ":")) + "\n")
                n += 1
        counts[res_type] = n
    with (target / "staff.csv").open("w", encoding="utf-8", newline="") as f:
        fields = ("username", "practitioner_id", "role_id", "job_role", "organisation_code")
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for account in found.staff:
            writer.writerow(asdict(account))
    counts["staff"] = len(found.staff)
    counts["people"] = _write_people(out, people, seed, as_of, found)
    manifest = {"people": people, "seed": seed, "as_of": as_of.isoformat(), "counts": counts}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return counts


PEOPLE_FIELDS = ("person_id", "nhs_number", "given", "family", "sex", "birth_date", "ethnicity", "borough", "ics",
                 "postcode", "imd_decile", "practice", "died_on", "moved_on", "previous_postcode", "twin_of")


def _write_people(out: Path, n: int, seed: int, as_of: date, found: directory.Directory) -> int:
    """truth/people.csv and the GP practices' Patient records (feeds/gp/Patient.ndjson), streamed."""
    (out / "truth").mkdir(parents=True, exist_ok=True)
    (out / "feeds" / "gp").mkdir(parents=True, exist_ok=True)
    seqs: dict[str, int] = {}
    written = 0
    with (out / "truth" / "people.csv").open("w", encoding="utf-8", newline="") as truth, \
            (out / "feeds" / "gp" / "Patient.ndjson").open("w", encoding="utf-8", newline="\n") as gp:
        writer = csv.writer(truth, lineterminator="\n")
        writer.writerow(PEOPLE_FIELDS)
        for person in generate_people(n, seed, as_of, found):
            writer.writerow(_row(person))
            seqs[person.practice] = seqs.get(person.practice, 0) + 1
            patient = gp_patient(person, found.org_ids[person.practice], seqs[person.practice])
            gp.write(json.dumps(patient, ensure_ascii=False, separators=(",", ":")) + "\n")
            written += 1
    return written


def _row(p: Person) -> list[str]:
    values = asdict(p)
    return ["" if values[f] is None else str(values[f]) for f in PEOPLE_FIELDS]
