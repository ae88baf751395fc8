"""Validation of a resource against the R4 4.0.1 StructureDefinitions.

Checks JSON types, unknown elements, cardinality (required elements included), choice-type
exclusivity, primitive formats (the R4 regexes plus real calendar dates), required bindings to the core
value sets we hold, the FHIRPath invariants of each element present, and the UK Core rule that an NHS
number identifier passes the modulus 11 check. Every failure names its path; diagnostics never quote
record content.
"""

from __future__ import annotations

from typing import Any

from sharedcare.errors import InvalidResource, Issue
from sharedcare.fhir.validation.structure import Walk


def validate(resource: Any) -> list[Issue]:
    """Every problem found, errors and warnings. Never raises for bad input."""
    walk = Walk(resource if isinstance(resource, dict) else {})
    walk.resource(resource, "")
    return walk.issues


def validate_or_raise(resource: Any) -> list[Issue]:
    """Raise InvalidResource (400) with every issue if any is an error; otherwise return the warnings."""
    issues = validate(resource)
    if any(i.severity in ("error", "fatal") for i in issues):
        raise InvalidResource(issues=issues)
    return issues
