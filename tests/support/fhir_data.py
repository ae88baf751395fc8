"""Helpers for tests that compare FHIR data: exact decimals, and the resources inside a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sharedcare.fhir import jsonio
from sharedcare.fhir.jsonio import FhirDecimal


def canonical(node: Any) -> Any:
    """The structure with decimals as their literals, so that 1.50 and 1.5 compare unequal."""
    if isinstance(node, dict):
        return {k: canonical(v) for k, v in node.items()}
    if isinstance(node, list):
        return [canonical(v) for v in node]
    if isinstance(node, FhirDecimal):
        return ("decimal", node.literal)
    return node


def resources_in(path: Path) -> list[dict[str, Any]]:
    """The resource in a JSON file and, for a Bundle, every entry's resource too."""
    doc = jsonio.loads(path.read_bytes())
    found = [doc]
    if doc.get("resourceType") == "Bundle":
        found += [e["resource"] for e in doc.get("entry", []) if isinstance(e.get("resource"), dict)]
    return found
