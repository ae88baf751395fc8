"""Official and Synthea examples validate with no errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharedcare.fhir import jsonio
from sharedcare.fhir.model import root_constraints
from sharedcare.fhir.validation import validate
from tests.support.conformance import conformance_files


@pytest.mark.slow
@pytest.mark.parametrize("path", conformance_files("synthea-r4", "*.json") + conformance_files(
    "fhirpath-r4/json-inputs", "*.json"))
def test_examples_validate_without_errors(path: Path) -> None:
    doc = jsonio.loads(path.read_bytes())
    errors = [(i.code, i.expression) for i in validate(doc) if i.severity == "error"]
    assert errors == KNOWN_DEFECTS.get(path.name, [])


# True defects of the data, not of the validator (each checked by hand against the R4 specification).
KNOWN_DEFECTS = {
    # A FHIRPath test input: `_given` has one entry for two `given` values; R4 JSON (json.html#primitive)
    # requires the arrays to line up, with null for a value that has no extension.
    "patient-name-extensions.json": [("structure", ("Patient.name[0]._given",))],
    # A FHIRPath test input: valueUuid is written as an object {"value": ...}; in FHIR JSON a primitive
    # is a JSON string.
    "parameters-example-types.json": [("value", ("Parameters.parameter[2].valueUuid",))],
}


@pytest.mark.slow
@pytest.mark.parametrize("path", conformance_files("synthea-r4", "*.json")[:40] + conformance_files(
    "fhirpath-r4/json-inputs", "*.json"))
def test_native_invariants_give_the_same_issues_as_fhirpathpy(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Invariants of the shape "A.empty() or B.exists()" run natively and must report exactly what the
    reference FHIRPath engine reports for them, on real data. (The keyed native rules are checked
    against fhirpathpy in test_rules.py; inv-1 deliberately departs from it there.)"""
    from sharedcare.fhir.validation import invariants, structure

    def forget_compiled_checks() -> None:  # the walk caches how each invariant is checked
        invariants.evaluator.cache_clear()
        structure.plan.cache_clear()

    doc = jsonio.loads(path.read_bytes())
    native = validate(doc)
    calls: list[str] = []

    def fhirpath_only(expression: str) -> None:
        calls.append(expression)
        return
    monkeypatch.setattr(invariants, "_pattern_rule", fhirpath_only)
    forget_compiled_checks()
    try:
        assert native == validate(doc)
        # The patch took effect: a shape that normally runs natively now goes to fhirpathpy.
        cpt_2 = next(c for c in root_constraints("ContactPoint") if c.key == "cpt-2")
        invariants.evaluator(cpt_2)
        assert cpt_2.expression in calls
    finally:
        monkeypatch.undo()
        forget_compiled_checks()
