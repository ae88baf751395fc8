"""Search-parameter extraction: the generated walkers select exactly what the FHIRPath expressions
select (fhirpathpy with the R4 model is the oracle), and values convert by FHIR type."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fhirpathpy import evaluate as fp_evaluate
from fhirpathpy.models import models

from sharedcare.fhir import jsonio
from sharedcare.fhir.search.extract import (
    DateValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    compile_part,
    compiled_for,
    evaluate,
    extract,
)
from tests.support.conformance import conformance_files
from tests.support.fhir_data import resources_in


def _plain(value: Any) -> Any:
    """Comparable form: numbers as exact decimals; fhirpathpy's own view of `_field` extensions aside."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (float, Decimal)) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(Decimal(str(value)).normalize())
    return value


def _key(value: Any) -> str:
    return jsonio.dumps(_plain(value)).decode()




def _check_against_fhirpath(resource: dict[str, Any]) -> int:
    checked = 0
    for comp in compiled_for(resource["resourceType"]):
        if comp.fallback is not None:
            continue
        expression_parts = []
        ours: list[Any] = []
        for step in comp.steps:
            if any(op[0] == "target" for op in step.ops):
                continue  # fhirpathpy cannot resolve(); covered by the unit tests below
            ours += [v for v, _ in evaluate(step, resource)]
            expression_parts.append(step)
        if not expression_parts:
            continue
        expr = " | ".join(p for p in _parts_without_resolve(comp.info.expression, resource["resourceType"]))
        if not expr:
            continue
        theirs = fp_evaluate(resource, expr, {}, models["r4"])
        assert Counter(map(_key, ours)).keys() == Counter(map(_key, theirs)).keys(), (comp.info.code, expr)
        checked += 1
    return checked


def _parts_without_resolve(expression: str, res_type: str) -> list[str]:
    from sharedcare.fhir.search.extract import _split_union

    return [p.replace("Resource.", f"{res_type}.", 1) for p in _split_union(expression)
            if p.lstrip("(").startswith((res_type + ".", "Resource.")) and "resolve()" not in p]


@pytest.mark.slow
@pytest.mark.parametrize("path", conformance_files("synthea-r4", "*.json")[:4] + conformance_files(
    "fhirpath-r4/json-inputs", "*.json"))
def test_walkers_select_what_fhirpath_selects(path: Path) -> None:
    checked = sum(_check_against_fhirpath(r) for r in resources_in(path))
    assert checked > 0


def test_choice_types_and_type_filters() -> None:
    obs = {"resourceType": "Observation", "valueQuantity": {"value": jsonio.FhirDecimal("1.50"), "code": "mmol/L",
                                                            "system": "http://unitsofmeasure.org"}}
    step = compile_part("(Observation.value as Quantity)")
    assert step is not None
    assert [k for _, k in evaluate(step, obs)] == ["Quantity"]
    values = extract(obs)
    assert QuantityValue("value-quantity", Decimal("1.50"), "http://unitsofmeasure.org", "mmol/L", None) \
        in values.quantities


def test_reference_targets_filter_by_type() -> None:
    obs = {"resourceType": "Observation", "subject": {"reference": "Patient/p1"},
           "performer": [{"reference": "Practitioner/d1"}, {"reference": "Patient/p1/_history/2"}]}
    refs = extract(obs).references
    assert ReferenceValue("patient", "Patient", "p1") in refs
    assert ReferenceValue("subject", "Patient", "p1") in refs
    assert ReferenceValue("performer", "Patient", "p1", "2") in refs
    assert not any(r.param == "patient" and r.target_type == "Practitioner" for r in refs)


def test_names_addresses_and_identifiers() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Ní Bhriain", "given": ["Éamon"]}],
               "address": [{"line": ["1 High  Street"], "postalCode": "SW1A 1AA"}],
               "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919",
                               "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                    "code": "NH"}]}}],
               "telecom": [{"system": "phone", "value": "020 7946 0000"}], "active": True}
    values = extract(patient)
    assert StringValue("family", "ni bhriain", "Ní Bhriain") in values.strings
    assert StringValue("given", "eamon", "Éamon") in values.strings
    assert StringValue("address", "1 high street", "1 High  Street") in values.strings
    assert TokenValue("identifier", "https://fhir.nhs.uk/Id/nhs-number", "9434765919", None,
                      "http://terminology.hl7.org/CodeSystem/v2-0203", "NH") in values.tokens
    assert TokenValue("phone", "phone", "020 7946 0000") in values.tokens
    assert TokenValue("active", None, "true") in values.tokens


@pytest.mark.parametrize(("value", "low", "high"), [
    ({"start": "2020-01-01", "end": "2020-01-31"}, "2020-01-01T00:00:00.000000", "2020-01-31T23:59:59.999999"),
    ({"start": "2020-01-01T10:00:00+01:00"}, "2020-01-01T09:00:00.000000", "9999-12-31T23:59:59.999999"),
])
def test_periods_cover_their_range(value: dict[str, str], low: str, high: str) -> None:
    enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "period": value}
    assert DateValue("date", low, high) in extract(enc).dates


def test_money_and_canonical_with_version() -> None:
    item = {"resourceType": "InsurancePlan", "status": "active"}
    assert extract(item).quantities == []
    q = {"resourceType": "QuestionnaireResponse", "questionnaire": "http://example.org/Q|3"}
    assert ReferenceValue("questionnaire", None, None, "3", "http://example.org/Q") in extract(q).references


def test_almost_every_expression_compiles_natively() -> None:
    from sharedcare.fhir.definitions import resource_types

    fallbacks = {(t, c.info.code) for t in resource_types() for c in compiled_for(t) if c.fallback}
    assert fallbacks == {("Bundle", "composition"), ("Bundle", "message"), ("Patient", "deceased")}


@pytest.mark.parametrize("patient", [
    {"resourceType": "Patient"}, {"resourceType": "Patient", "deceasedBoolean": True},
    {"resourceType": "Patient", "deceasedBoolean": False}, {"resourceType": "Patient", "deceasedDateTime": "2020"},
])
def test_native_expressions_agree_with_fhirpath(patient: dict[str, Any]) -> None:
    from sharedcare.fhir.search.extract import NATIVE_EXPRESSIONS

    for expression, native in NATIVE_EXPRESSIONS.items():
        assert native(patient) == fp_evaluate(patient, expression, {}, models["r4"])
    deceased = [t.code for t in extract(patient).tokens if t.param == "deceased"]
    assert deceased == ["true" if "deceasedDateTime" in patient or patient.get("deceasedBoolean") else "false"]


@pytest.mark.parametrize("path", conformance_files("synthea-r4", "*.json")[:8] + conformance_files(
    "fhirpath-r4/json-inputs", "*.json"))
def test_generated_extractors_select_exactly_what_the_walkers_select(path: Path) -> None:
    """Each parameter's steps run as generated Python code; the walker (`evaluate`, checked against
    fhirpathpy above) is the reference: the same values, converted the same way, in the same order."""
    from sharedcare.fhir.search.extract import IndexValues, _add

    compared = 0
    for resource in resources_in(path):
        for comp in compiled_for(resource["resourceType"]):
            if comp.run is None:
                continue
            generated, walked = IndexValues(), IndexValues()
            comp.run(resource, generated)
            for step in comp.steps:
                for value, kind in evaluate(step, resource):
                    _add(comp.info, value, kind, walked)
            assert generated == walked, (resource["resourceType"], comp.info.code)
            compared += 1
    assert compared > 0
