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
from pathlib import Path
from typing import Any

import pytest

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


def check(case: Path) -> dict[str, Any]:
    """Map the case and compare it with its expected file (or write it, when updating)."""
    got = mapped_json(case)
    expected_file = case / "expected.json"
    text = json.dumps(got, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    if UPDATE or not expected_file.exists():
        expected_file.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"{case.name}: no expected.json yet; one was written for review")
    assert got == json.loads(expected_file.read_text(encoding="utf-8"))
    return got
