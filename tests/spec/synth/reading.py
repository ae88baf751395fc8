"""Reading generated synthetic London back, for the tests: the feeds as a receiver would parse them."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hl7

from sharedcare.fhir import jsonio


def bundles(root: Path, folder: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(sending organisation, Bundle) for every bundle in feeds/<folder>/*.ndjson, parsed as the store parses."""
    for path in sorted((root / "feeds" / folder).glob("*.ndjson")):
        with path.open("rb") as f:
            for line in f:
                yield path.stem, jsonio.loads(line)


def resources(bundle: dict[str, Any], res_type: str | None = None) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])
            if res_type is None or e["resource"]["resourceType"] == res_type]


def gp_patients(root: Path) -> list[dict[str, Any]]:
    return [resources(b, "Patient")[0] for _, b in bundles(root, "gp")]


def hl7_files(root: Path) -> list[tuple[Path, Any]]:
    """(path, python-hl7 File) for every HL7 v2 batch file under feeds/."""
    return [(path, hl7.parse_file(path.read_bytes().decode("utf-8")))
            for path in sorted((root / "feeds").rglob("*.hl7"))]


def pid_ids(message: Any) -> dict[str, str]:
    """PID-3 as {identifier type code: identifier}, e.g. {"MR": "RJ10000001", "NH": "9000000009"}."""
    out = {}
    for repetition in str(message.segment("PID")[3]).split("~"):
        parts = repetition.split("^")
        out[parts[4]] = parts[0]
    return out


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))
