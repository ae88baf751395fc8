"""Synthetic London: organisations, people and per-source feeds with ground truth (issue 4).

So far: the directory of organisations and staff (`directory.py`), written by `sharedcare synth`.
People, clinical content, feeds and truth files come next (docs/synth.md says what exists).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from datetime import date
from pathlib import Path

from sharedcare.synth import directory

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
    manifest = {"people": people, "seed": seed, "as_of": as_of.isoformat(), "counts": counts}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return counts
