"""A person as one source records them: the FHIR Patient a GP practice's system sends.

Each source has its own local identifier for the person; the GP record carries the NHS number
(verified), the practice's local number, the registered practice and the address.
"""

from __future__ import annotations

import uuid
from typing import Any

from sharedcare.synth.directory import ODS, synthetic_meta
from sharedcare.synth.people import Person

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ETHNIC_EXTENSION = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
ETHNIC_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"
REGISTRATION = "https://sharedcare.example/StructureDefinition/gp-registration-date"  # local: no UK Core R4 one
PRACTICE_LOCAL = "https://sharedcare.example/Id/gp-practice-patient-number/"  # + the practice's ODS code


def gp_patient(person: Person, practice_id: str, seq: int) -> dict[str, Any]:
    """The practice's Patient for `person` (`seq`: the practice system's own number for them)."""
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"gp:{person.practice}:{person.person_id}")),
        "meta": synthetic_meta(),
        "extension": [{"url": ETHNIC_EXTENSION,
                       "valueCodeableConcept": {"coding": [{"system": ETHNIC_SYSTEM, "code": person.ethnicity}]}}],
        "identifier": [
            {"system": NHS, "value": person.nhs_number},
            {"system": PRACTICE_LOCAL + person.practice, "value": str(seq)},
        ],
        "name": [{"use": "official", "family": person.family, "given": [person.given]}],
        "gender": person.sex,
        "birthDate": person.birth_date.isoformat(),
        "address": _addresses(person),
        "generalPractitioner": [{"reference": f"Organization/{practice_id}",
                                 "identifier": {"system": ODS, "value": person.practice}}],
        "managingOrganization": {"reference": f"Organization/{practice_id}"},
    }
    if person.registered_on is not None:
        res["extension"].append({"url": REGISTRATION, "valueDate": person.registered_on.isoformat()})
    if person.died_on is not None:
        res["deceasedDateTime"] = person.died_on.isoformat()
    return res


def _addresses(person: Person) -> list[dict[str, Any]]:
    home: dict[str, Any] = {"use": "home", "city": "London", "postalCode": person.postcode, "country": "GB"}
    if person.moved_on is None or person.previous_postcode is None:
        return [home]
    home["period"] = {"start": person.moved_on.isoformat()}
    return [home, {"use": "old", "city": "London", "postalCode": person.previous_postcode, "country": "GB",
                   "period": {"end": person.moved_on.isoformat()}}]
