"""Golden files for the CSV column mappings: `tests/data/csv/<case>/input.csv` (an extract as a source
sends it, header first), the mapping (`mapping`, a file naming a packaged mapping, or `mapping.yaml`)
and `expected.json`: for each data row, what the mapping makes of it (the transaction Bundle, the
patient key, when the source recorded it, warnings) or, for a row it refuses, the error (HL7 code,
reason, column position). `context.json` names the sending source (`source`, `ods`, `name`).

To write or refresh the expected files after a deliberate change to a mapping:
`SHAREDCARE_UPDATE_GOLDEN=1 uv run pytest tests/spec/ingest`; review the diff before committing it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from sharedcare.ingest.csv import mapping as csv_mapping
from sharedcare.ingest.hl7v2.mapping import Context
from sharedcare.ingest.hl7v2.message import ParseError
from tests.spec.ingest.golden import compare

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "csv"


def cases(prefix: str = "") -> list[Any]:
    """Pytest params, one per golden case whose folder name starts with `prefix`."""
    return [pytest.param(d, id=d.name) for d in sorted(GOLDEN.iterdir())
            if d.is_dir() and d.name.startswith(prefix) and (d / "input.csv").exists()]


def mapping_for(case: Path) -> csv_mapping.CsvMapping:
    own = case / "mapping.yaml"
    if own.exists():
        return csv_mapping.load(own.read_text(encoding="utf-8"))
    return csv_mapping.packaged((case / "mapping").read_text(encoding="utf-8").strip())


def context_for(case: Path) -> Context:
    return Context(**json.loads((case / "context.json").read_text(encoding="utf-8")))


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as f:
        header, *rows = csv.reader(f)
    return header, rows


def mapped_json(case: Path) -> list[dict[str, Any]]:
    """Each data row's mapping, as the expected file holds it."""
    mapping, ctx = mapping_for(case), context_for(case)
    header, rows = read_csv(case / "input.csv")
    out: list[dict[str, Any]] = []
    for row in rows:
        try:
            got = csv_mapping.map_row(mapping, header, row, ctx)
        except ParseError as exc:
            out.append({"error": {"code": exc.code, "reason": exc.reason, "column": exc.field_no}})
            continue
        out.append({"bundle": got.bundle, "patient_key": got.patient_key, "recorded": got.recorded,
                    "warnings": got.warnings})
    return out


def check(case: Path) -> list[dict[str, Any]]:
    """Map the case and compare it with its expected file (golden.compare: value and text)."""
    got: list[dict[str, Any]] = compare(case, mapped_json(case))
    return got
