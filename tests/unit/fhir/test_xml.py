"""FHIR XML <-> JSON by the R4 StructureDefinitions: order, primitives and their extensions, choice
types, decimals, contained resources, narrative, and refusal of unsafe XML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from sharedcare.errors import BadRequest
from sharedcare.fhir import jsonio
from sharedcare.fhir.jsonio import FhirDecimal
from sharedcare.fhir.xml import json_to_xml, xml_to_json
from tests.support.conformance import conformance_files
from tests.support.fhir_data import canonical, resources_in

PATIENT_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <id value="p1"/>
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>Ann <b>Smith</b></p></div></text>
  <contained><Organization><id value="org"/><name value="Surgery"/></Organization></contained>
  <extension url="http://example.org/ext"><valueDecimal value="1.50"/></extension>
  <identifier id="i1"><system value="https://fhir.nhs.uk/Id/nhs-number"/><value value="9434765919"/></identifier>
  <active value="true"/>
  <name><family value="Smith"/><given value="Ann"/><given id="g2"><extension url="http://example.org/x">
    <valueString value="y"/></extension></given></name>
  <birthDate value="1970-01-01"/>
  <deceasedBoolean value="false"/>
  <multipleBirthInteger value="2"/>
  <managingOrganization><reference value="#org"/></managingOrganization>
</Patient>"""

PATIENT_JSON: dict[str, Any] = {
    "resourceType": "Patient", "id": "p1",
    "text": {"status": "generated",
             "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Ann <b>Smith</b></p></div>'},
    "contained": [{"resourceType": "Organization", "id": "org", "name": "Surgery"}],
    "extension": [{"url": "http://example.org/ext", "valueDecimal": FhirDecimal("1.50")}],
    "identifier": [{"id": "i1", "system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
    "active": True,
    "name": [{"family": "Smith", "given": ["Ann", None], "_given": [None, {"id": "g2", "extension": [
        {"url": "http://example.org/x", "valueString": "y"}]}]}],
    "birthDate": "1970-01-01", "deceasedBoolean": False, "multipleBirthInteger": 2,
    "managingOrganization": {"reference": "#org"},
}




def test_xml_to_json_follows_the_json_rules() -> None:
    assert canonical(xml_to_json(PATIENT_XML)) == canonical(PATIENT_JSON)


def test_json_to_xml_round_trips_and_orders_by_the_definition() -> None:
    shuffled = dict(reversed(list(PATIENT_JSON.items())))
    xml = json_to_xml(shuffled)
    names = [etree.QName(e).localname for e in etree.fromstring(xml)]
    assert names[:4] == ["id", "text", "contained", "extension"]
    assert names[-1] == "managingOrganization"
    assert canonical(xml_to_json(xml)) == canonical(PATIENT_JSON)


def test_decimals_keep_their_literal_both_ways() -> None:
    obs = jsonio.loads(b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
                       b'"valueQuantity":{"value":1.50},"referenceRange":[{"low":{"value":1.0e2}}]}')
    xml = json_to_xml(obs)
    assert b'value="1.50"' in xml
    assert b'value="1.0e2"' in xml
    assert jsonio.dumps(xml_to_json(xml)) == jsonio.dumps(obs)


def test_single_occurrences_of_repeating_elements_are_arrays() -> None:
    doc = xml_to_json(b'<Patient xmlns="http://hl7.org/fhir"><name><given value="A"/></name></Patient>')
    assert doc == {"resourceType": "Patient", "name": [{"given": ["A"]}]}


def test_recursive_elements_by_content_reference() -> None:
    q = {"resourceType": "Questionnaire", "status": "draft", "item": [
        {"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string", "item": [
            {"linkId": "1.1.1", "type": "display"}]}]}]}
    assert xml_to_json(json_to_xml(q)) == q


def test_bundles_wrap_theirresources_in() -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "active": True}}]}
    xml = json_to_xml(bundle)
    assert b"<resource><Patient>" in xml
    assert xml_to_json(xml) == bundle


@pytest.mark.parametrize("bad", [
    b'<Patient xmlns="http://hl7.org/fhir"><madeUp value="1"/></Patient>',
    b'<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>',
    b'<Patient xmlns="http://hl7.org/fhir"><birthDate value="1"/><birthDate value="2"/></Patient>',
    b'<Patient><active value="true"/></Patient>',
    b'<Spaceship xmlns="http://hl7.org/fhir"/>',
    b"<Patient xmlns='http://hl7.org/fhir'><active value='true'/>",
    b"\xff\xfe<",
])
def test_malformed_or_unknown_xml_is_a_bad_request(bad: bytes) -> None:
    with pytest.raises(BadRequest):
        xml_to_json(bad)


@pytest.mark.parametrize("attack", [
    b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>',
    b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><Patient xmlns="http://hl7.org/fhir"><id value="&c;"/></Patient>',
    b'<?xml version="1.0"?><!DOCTYPE Patient SYSTEM "http://127.0.0.1:9/canary.dtd">'
    b'<Patient xmlns="http://hl7.org/fhir"/>',
    b'<Patient xmlns="http://hl7.org/fhir" xmlns:xi="http://www.w3.org/2001/XInclude">'
    b'<xi:include href="file:///etc/passwd" parse="text"/></Patient>',
])
def test_xml_attacks_are_refused(attack: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        xml_to_json(attack)
    assert "root:" not in str(info.value)


def test_narrative_with_an_entity_declaration_is_refused_on_output() -> None:
    doc = {"resourceType": "Patient", "text": {"status": "generated",
                                               "div": '<!DOCTYPE x [<!ENTITY e "e">]><div xmlns="http://www.w3.org/1999/xhtml">&e;</div>'}}
    with pytest.raises(BadRequest):
        json_to_xml(doc)




@pytest.mark.slow
@pytest.mark.parametrize("path", conformance_files("synthea-r4", "*.json") + conformance_files(
    "fhirpath-r4/json-inputs", "*.json"))
def test_every_conformance_resource_round_trips(path: Path) -> None:
    for resource in resources_in(path):
        if path.name in NOT_VALID_JSON:
            continue
        # Key order follows the definitions after the trip; values, decimals and nesting must not change.
        assert canonical(xml_to_json(json_to_xml(resource))) == canonical(resource)


# FHIRPath test inputs that are not valid FHIR JSON (see tests/unit/fhir/validation/test_conformance.py).
NOT_VALID_JSON = {"patient-name-extensions.json", "parameters-example-types.json"}
