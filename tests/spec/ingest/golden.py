"""Golden files for the HL7 v2 mappings: `tests/data/hl7v2/<case>/input.hl7` (one message, as a source
sends it) and `expected.json` (what the mapping makes of it: the transaction Bundle, the patient key,
when the source recorded it, merges and warnings). `context.json`, when present, names the sending
source (`source`, `ods`, `name`); otherwise the message's sending facility (MSH-4) is the source.

To write or refresh the expected files after a deliberate change to a mapping:
`SHAREDCARE_UPDATE_GOLDEN=1 uv run pytest tests/spec/ingest`; review the diff before committing it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from sharedcare.fhir.jsonio import FhirDecimal
from sharedcare.ingest.hl7v2 import mapping
from sharedcare.ingest.hl7v2.message import parse

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "hl7v2"
UPDATE = os.environ.get("SHAREDCARE_UPDATE_GOLDEN") == "1"


def cases(prefix: str = "") -> list[Any]:
    """Pytest params, one per golden case whose folder name starts with `prefix`."""
    return [pytest.param(d, id=d.name) for d in sorted(GOLDEN.iterdir())
            if d.is_dir() and d.name.startswith(prefix) and (d / "input.hl7").exists()]


def context_for(case: Path, msg: Any) -> mapping.Context:
    file = case / "context.json"
    if file.exists():
        return mapping.Context(**json.loads(file.read_text(encoding="utf-8")))
    return mapping.Context(msg.sending_facility, msg.sending_facility)


def mapped_json(case: Path) -> dict[str, Any]:
    msg = parse((case / "input.hl7").read_text(encoding="utf-8"))
    got = mapping.map_message(msg, context_for(case, msg))
    return {"bundle": got.bundle, "patient_key": got.patient_key, "recorded": got.recorded,
            "merges": [dataclasses.asdict(m) for m in got.merges], "warnings": got.warnings}


def _marked(obj: Any) -> Any:
    """Each FhirDecimal as a marked string, so the text can carry its literal (`json` would write the
    float: 1.50 as 1.5)."""
    if isinstance(obj, FhirDecimal):
        return "\0" + obj.literal
    if isinstance(obj, dict):
        return {k: _marked(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_marked(v) for v in obj]
    return obj


def expected_text(got: dict[str, Any]) -> str:
    """The expected file's text for a mapping: sorted, indented JSON, decimals written as sent."""
    text = json.dumps(_marked(got), indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    return re.sub(r'"\\u0000([^"]*)"', r"\1", text)


def check(case: Path) -> dict[str, Any]:
    """Map the case and compare it with its expected file (or write it, when updating); the text too,
    so a decimal's precision is pinned as well as its value."""
    got: dict[str, Any] = compare(case, mapped_json(case))
    return got


def compare(case: Path, got: Any) -> Any:
    """`got` against the case's expected.json (written instead when updating, or when there is none,
    which fails the test so a new file is reviewed), by value and by text."""
    expected_file = case / "expected.json"
    text = expected_text(got)
    if UPDATE or not expected_file.exists():
        expected_file.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"{case.name}: no expected.json yet; one was written for review")
    expected = expected_file.read_text(encoding="utf-8")
    assert got == json.loads(expected)
    assert text == expected
    return got
