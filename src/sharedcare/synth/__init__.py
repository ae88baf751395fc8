"""Synthetic London: organisations, people and per-source feeds with ground truth (issue 4).

The directory of organisations and staff (`directory.py`), the people (`people.py`), what happens to
each of them (`clinical.py`, `immunisations.py`), how each source records them (`identity.py`) and
sends it (`feeds.py`: FHIR, HL7 v2, CSV), and the truth to score matching and analytics against
(`truth.py`). docs/synth.md describes the output and its calibration.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from datetime import date
from pathlib import Path

from sharedcare.synth import directory
from sharedcare.synth.clinical import Ids, story
from sharedcare.synth.feeds import Feeds
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
                 "postcode", "imd_decile", "practice", "died_on", "moved_on", "previous_postcode", "twin_of",
                 "registered_on")


def _write_people(out: Path, n: int, seed: int, as_of: date, found: directory.Directory) -> int:
    """truth/people.csv, and every source's feeds with the rest of the truth, streamed person by person."""
    (out / "truth").mkdir(parents=True, exist_ok=True)
    feeds = Feeds(out, found, as_of, seed, n)
    ids = Ids()
    written = 0
    try:
        with (out / "truth" / "people.csv").open("w", encoding="utf-8", newline="") as truth:
            writer = csv.writer(truth, lineterminator="\n")
            writer.writerow(PEOPLE_FIELDS)
            for person in generate_people(n, seed, as_of, found):
                writer.writerow(_row(person))
                feeds.write(person, story(person, as_of, seed, feeds.care, ids))
                written += 1
    finally:
        feeds.close()
    return written


def _row(p: Person) -> list[str]:
    return ["" if (value := getattr(p, f)) is None else str(value) for f in PEOPLE_FIELDS]
