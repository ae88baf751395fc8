"""The oracle itself, on small hand-made data with answers worked out from the R4 search page: an oracle
that is wrong in the same way as the engine would let both pass."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.integration.search.oracle import (
    Oracle,
    Registry,
    Unsupported,
    date_matches,
    date_range,
    normalise,
    split_unescaped,
    unescape,
)
from tests.support.conformance import conformance_path

DAY = 86_400_000_000


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(conformance_path("fhir-r4", "search-parameters.json"))


def oracle(registry: Registry, *resources: dict[str, Any]) -> Oracle:
    return Oracle(registry, resources, "http://testserver/fhir")


def test_date_ranges_follow_the_precision_given() -> None:
    year = date_range("2020")
    assert year[1] - year[0] == 366 * DAY
    assert date_range("2020-02")[1] - date_range("2020-02")[0] == 29 * DAY
    assert date_range("2020-02-29")[1] - date_range("2020-02-29")[0] == DAY
    assert date_range("2020-02-29T10:00:00Z")[1] - date_range("2020-02-29T10:00:00Z")[0] == 1_000_000
    assert date_range("2020-02-29T10:00:00.5Z")[1] - date_range("2020-02-29T10:00:00.5Z")[0] == 100_000
    assert date_range("2020-02-29T12:00:00+02:00") == date_range("2020-02-29T10:00:00Z")
    assert date_range("2020-12")[1] == date_range("2021")[0]
    for bad in ("2020-13", "2019-02-29", "20", "2020-01-01T25:00:00Z", "x"):
        with pytest.raises(ValueError, match="not a"):
            date_range(bad)


@pytest.mark.parametrize(("prefix", "target", "search", "expected"), [
    ("eq", "2013-01-14T10:00:00Z", "2013-01-14", True),  # the day contains the instant
    ("eq", "2013-01", "2013-01-14", False),  # a month is not inside a day
    ("ne", "2013-01", "2013-01-14", True),
    ("gt", "2013-01", "2013-01-14", True),  # the month reaches past the day
    ("lt", "2013-01", "2013-01-14", True),
    ("sa", "2013-01", "2013-01-14", False),
    ("sa", "2013-01-15", "2013-01-14", True),
    ("eb", "2013-01-13", "2013-01-14", True),
    ("eb", "2013-01-14T00:00:00Z", "2013-01-14", False),
    ("ge", "2013-01-14T23:59:59Z", "2013-01-14", True),
    ("le", "2013-01-15T00:00:00Z", "2013-01-14", False),
])
def test_date_prefixes(prefix: str, target: str, search: str, expected: bool) -> None:
    assert date_matches(prefix, date_range(target), date_range(search)) is expected


def test_escapes() -> None:
    assert split_unescaped("a\\,b,c", ",") == ["a\\,b", "c"]
    assert unescape("a\\,b\\|c\\$d\\\\e") == "a,b|c$d\\e"
    assert normalise("  Zoë  MÜLLER ") == "zoe muller"


def test_strings_numbers_and_quantities(registry: Registry) -> None:
    o = oracle(
        registry,
        {"resourceType": "Patient", "id": "eve", "name": [{"family": "Evelyn", "given": ["Ann"]}]},
        {"resourceType": "Patient", "id": "zoe", "name": [{"family": "Zoë", "text": "Zoë Eve"}]},
        {"resourceType": "RiskAssessment", "id": "a", "status": "final", "subject": {"reference": "Patient/eve"},
         "prediction": [{"probabilityDecimal": Decimal("100")}]},
        {"resourceType": "RiskAssessment", "id": "b", "status": "final", "subject": {"reference": "Patient/zoe"},
         "prediction": [{"probabilityDecimal": Decimal("100.06")}]},
        {"resourceType": "Observation", "id": "mg", "status": "final", "code": {"text": "x"},
         "valueQuantity": {"value": Decimal("5.4"), "unit": "milligram", "system": "http://unitsofmeasure.org",
                           "code": "mg"}},
    )
    assert o.search("Patient", [("name", "eve")]) == {"eve"}  # a part starts with it; "Zoë Eve" does not
    assert o.search("Patient", [("family", "eve")]) == {"eve"}
    assert o.search("Patient", [("family:exact", "Zoë")]) == {"zoe"}
    assert o.search("Patient", [("family:exact", "Zoe")]) == set()
    assert o.search("Patient", [("family", "zoe")]) == {"zoe"}
    assert o.search("Patient", [("name:contains", "ly")]) == {"eve"}
    assert o.search("RiskAssessment", [("probability", "100")]) == {"a", "b"}  # [99.5, 100.5)
    assert o.search("RiskAssessment", [("probability", "100.0")]) == {"a"}  # [99.95, 100.05)
    assert o.search("RiskAssessment", [("probability", "ne100.0")]) == {"b"}
    assert o.search("RiskAssessment", [("probability", "1e2")]) == {"a", "b"}
    assert o.search("RiskAssessment", [("probability", "gt100")]) == {"b"}
    assert o.search("Observation", [("value-quantity", "5.4|http://unitsofmeasure.org|mg")]) == {"mg"}
    assert o.search("Observation", [("value-quantity", "5.4||milligram")]) == {"mg"}
    assert o.search("Observation", [("value-quantity", "5.4|http://unitsofmeasure.org|milligram")]) == set()
    assert o.search("Observation", [("value-quantity", "lt5.4")]) == set()


def test_the_name_matches_on_any_part_even_the_text(registry: Registry) -> None:
    o = oracle(registry, {"resourceType": "Patient", "id": "p", "name": [{"text": "Zoë Eve"}]})
    assert o.search("Patient", [("name", "zoe e")]) == {"p"}
    assert o.search("Patient", [("name", "eve")]) == set()


def test_tokens(registry: Registry) -> None:
    o = oracle(
        registry,
        {"resourceType": "Observation", "id": "sys", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5", "display": "Glucose"}],
                  "text": "Blood sugar"}},
        {"resourceType": "Observation", "id": "nosys", "status": "final", "code": {"coding": [{"code": "1234-5"}]}},
        {"resourceType": "Observation", "id": "none", "status": "final", "code": {"text": "nothing coded"}},
    )
    assert o.search("Observation", [("code", "1234-5")]) == {"sys", "nosys"}
    assert o.search("Observation", [("code", "http://loinc.org|1234-5")]) == {"sys"}
    assert o.search("Observation", [("code", "|1234-5")]) == {"nosys"}
    assert o.search("Observation", [("code", "http://loinc.org|")]) == {"sys"}
    assert o.search("Observation", [("code:not", "1234-5")]) == {"none"}
    assert o.search("Observation", [("code:text", "gluc")]) == {"sys"}
    assert o.search("Observation", [("code:text", "blood")]) == {"sys"}
    assert o.search("Observation", [("code", "1234-5"), ("code", "http://loinc.org|1234-5")]) == {"sys"}
    assert o.search("Observation", [("code:missing", "true")]) == set()
    assert o.search("Observation", [("status", "final")]) == {"sys", "nosys", "none"}
    assert o.search("Observation", [("status", "FINAL")]) == set()


def test_composites_take_both_parts_from_the_same_component(registry: Registry) -> None:
    def bp(id_: str, systolic: int, diastolic: int) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": id_, "status": "final", "code": {"text": "BP"}, "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": systolic, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": diastolic, "code": "mm[Hg]"}}]}

    o = oracle(registry, bp("high", 150, 95), bp("low", 95, 60))
    assert o.search("Observation", [("component-code-value-quantity", "8480-6$gt140")]) == {"high"}
    assert o.search("Observation", [("component-code-value-quantity", "8480-6$95")]) == {"low"}
    assert o.search("Observation", [("component-code-value-quantity", "8462-4$95")]) == {"high"}
    # separate parameters are not tied to one component
    separate = [("component-code", "8480-6"), ("component-value-quantity", "95")]
    assert o.search("Observation", separate) == {"high", "low"}
    with pytest.raises(Unsupported):
        o.search("Observation", [("component-code-value-quantity", "8480-6")])


def test_references_chains_and_reverse_chains(registry: Registry) -> None:
    o = oracle(
        registry,
        {"resourceType": "Organization", "id": "org", "name": "Acme"},
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith"}],
         "managingOrganization": {"reference": "Organization/org"}},
        {"resourceType": "Patient", "id": "p2", "name": [{"family": "Jones"}]},
        {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"coding": [{"code": "a"}]},
         "subject": {"reference": "Patient/p1"}},
        {"resourceType": "Observation", "id": "o2", "status": "final", "code": {"coding": [{"code": "b"}]},
         "subject": {"reference": "http://testserver/fhir/Patient/p2"}},
        {"resourceType": "Observation", "id": "o3", "status": "final", "code": {"coding": [{"code": "b"}]},
         "subject": {"reference": "Patient/gone"},
         "performer": [{"identifier": {"system": "urn:staff", "value": "7"}}]},
    )
    assert o.search("Observation", [("subject", "Patient/p1")]) == {"o1"}
    assert o.search("Observation", [("subject", "p2")]) == {"o2"}
    assert o.search("Observation", [("subject", "http://testserver/fhir/Patient/p1")]) == {"o1"}
    assert o.search("Observation", [("subject:Patient", "p1,p2")]) == {"o1", "o2"}
    assert o.search("Observation", [("subject:Group", "p1")]) == set()
    assert o.search("Observation", [("patient", "gone")]) == {"o3"}  # the reference, not its target
    assert o.search("Observation", [("performer:identifier", "urn:staff|7")]) == {"o3"}
    assert o.search("Observation", [("subject:Patient.family", "smi")]) == {"o1"}
    assert o.search("Observation", [("patient.organization.name", "acme")]) == {"o1"}
    assert o.search("Observation", [("patient.family", "x")]) == set()
    assert o.search("Patient", [("_has:Observation:patient:code", "b")]) == {"p2"}
    assert o.search("Organization", [("_has:Patient:organization:_has:Observation:patient:code", "a")]) == {"org"}
    assert o.search("Patient", [("organization:missing", "true")]) == {"p2"}
