"""Comparable demographics (issue 6, item 1): what matching reads from a source Patient.

Each source writes names, dates, postcodes and NHS numbers its own way; matching compares one
canonical form of each. An NHS number that fails its check digit is kept as the source's unverified
identifier and never used for linking.
"""

from __future__ import annotations

from typing import Any

import pytest

from sharedcare.mpi.normalise import (
    NHS_NUMBER_SYSTEM,
    birth_date,
    family_key,
    from_patient,
    name_words,
    nhs_number,
    postcode,
    same_given_name,
)

VALID = "9434765919"
OTHER_VALID = "9434765927"
WRONG_CHECK_DIGIT = "9434765918"


def patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **fields}


def nhs(value: str) -> dict[str, str]:
    return {"system": NHS_NUMBER_SYSTEM, "value": value}


@pytest.mark.parametrize(("written", "read"), [
    (VALID, VALID),
    ("943 476 5919", VALID),
    ("943-476-5919", VALID),
    (WRONG_CHECK_DIGIT, None),
    ("94347659", None),  # too short
    ("94347659190", None),  # too long
    ("943476591X", None),
    ("", None),
    (None, None),
])
def test_an_nhs_number_is_read_only_when_its_check_digit_is_right(written: str | None, read: str | None) -> None:
    assert nhs_number(written) == read


def test_an_invalid_nhs_number_is_kept_as_unverified_and_never_used_for_linking() -> None:
    got = from_patient(patient(identifier=[nhs(WRONG_CHECK_DIGIT)]))
    assert got.nhs_number is None
    assert got.unverified_numbers == (WRONG_CHECK_DIGIT,)


def test_a_valid_number_beside_a_mistyped_one_is_used_and_the_other_kept_unverified() -> None:
    got = from_patient(patient(identifier=[nhs("943 476 5919"), nhs(WRONG_CHECK_DIGIT)]))
    assert (got.nhs_number, got.unverified_numbers) == (VALID, (WRONG_CHECK_DIGIT,))


def test_a_record_with_two_different_valid_nhs_numbers_links_by_neither() -> None:
    got = from_patient(patient(identifier=[nhs(VALID), nhs(OTHER_VALID)]))
    assert got.nhs_number is None
    assert got.unverified_numbers == (VALID, OTHER_VALID)


def test_numbers_of_other_systems_are_not_nhs_numbers() -> None:
    got = from_patient(patient(identifier=[{"system": "https://example.org/mrn", "value": VALID}]))
    assert (got.nhs_number, got.unverified_numbers) == (None, ())


@pytest.mark.parametrize(("written", "words"), [
    ("SMITH", ("smith",)),
    ("Zoë", ("zoe",)),
    ("José María", ("jose", "maria")),
    ("O'Brien", ("obrien",)),
    ("O’Brien", ("obrien",)),
    ("Smith-Jones", ("smith", "jones")),
    ("  van  der Berg ", ("van", "der", "berg")),
    ("Søren Łukasz", ("soren", "lukasz")),
    ("Straße", ("strasse",)),
    ("", ()),
    (None, ()),
])
def test_names_are_compared_as_plain_lower_case_words(written: str | None, words: tuple[str, ...]) -> None:
    assert name_words(written) == words


def test_a_family_name_is_one_string_however_it_is_joined() -> None:
    assert family_key("Smith-Jones") == family_key("smith jones") == family_key("SMITHJONES") == "smithjones"
    assert family_key("   ") is None


@pytest.mark.parametrize(("a", "b"), [("bob", "robert"), ("robert", "bob"), ("liz", "elizabeth"),
                                      ("peggy", "margaret"), ("jim", "james"), ("ann", "ann")])
def test_given_names_match_their_nicknames(a: str, b: str) -> None:
    assert same_given_name(a, b)


@pytest.mark.parametrize(("a", "b"), [("robert", "margaret"), ("john", "jane"), ("bob", ""), ("", "")])
def test_different_given_names_do_not_match(a: str, b: str) -> None:
    assert not same_given_name(a, b)


@pytest.mark.parametrize(("written", "read"), [
    ("SW1A 1AA", "SW1A 1AA"),
    ("sw1a1aa", "SW1A 1AA"),
    (" e1  6an ", "E1 6AN"),
    ("N1 9GU", "N1 9GU"),
    ("EC1A 1BB", "EC1A 1BB"),
    ("W1A 0AX", "W1A 0AX"),
    ("SW1A", None),  # an outward code alone
    ("12345", None),
    ("", None),
    (None, None),
])
def test_postcodes_are_read_in_their_standard_form(written: str | None, read: str | None) -> None:
    assert postcode(written) == read


@pytest.mark.parametrize(("written", "read"), [
    ("1970-01-31", "1970-01-31"),
    ("1970-01", "1970-01"),
    ("1970", "1970"),
    ("1970-02-30", None),  # no such day
    ("1970-13", None),
    ("31/01/1970", None),
    (None, None),
])
def test_a_date_of_birth_is_a_fhir_date_that_exists(written: str | None, read: str | None) -> None:
    assert birth_date(written) == read


def test_the_demographics_of_a_patient() -> None:
    got = from_patient(patient(
        identifier=[nhs("943 476 5919")],
        name=[{"use": "maiden", "family": "Ó Súilleabháin", "given": ["Mary"]},
              {"use": "official", "family": "Smith-Jones", "given": ["Mary Ann", "Zoë"]},
              {"use": "nickname", "given": ["Molly"]}],
        gender="female", birthDate="1970-01-31",
        address=[{"use": "home", "postalCode": "n1 9gu", "period": {"end": "2020-01-01"}},
                 {"use": "work", "postalCode": "EC1A 1BB"},
                 {"use": "home", "postalCode": "e16an"}]))
    assert got.nhs_number == VALID
    assert (got.family, got.family_words) == ("smithjones", ("smith", "jones"))
    assert got.former_families == ("osuilleabhain",)
    assert got.given == ("mary", "ann", "zoe")
    assert (got.birth_date, got.sex) == ("1970-01-31", "female")
    assert got.postcode == "E1 6AN"  # the current home address, not an ended one or work


def test_a_patient_with_almost_nothing_has_empty_demographics() -> None:
    got = from_patient(patient(gender="not-a-gender", birthDate="yesterday", name=[{"text": "J Smith"}]))
    assert got == type(got)(nhs_number=None, unverified_numbers=(), family=None, family_words=(),
                            former_families=(), given=(), birth_date=None, sex=None, postcode=None)


@pytest.mark.parametrize("written", ["UNKNOWN", "Unknown", "unk", "Not Known", "ZZZ", "anonymous"])
def test_a_placeholder_is_not_a_name(written: str) -> None:
    """An unidentified emergency patient is registered as UNKNOWN UNKNOWN: two such records must
    never look alike by name."""
    got = from_patient(patient(name=[{"family": written, "given": [written]}]))
    assert (got.family, got.family_words, got.given) == (None, (), ())


def test_a_newborn_named_baby_has_no_given_name_yet() -> None:
    got = from_patient(patient(name=[{"family": "Okafor", "given": ["Baby", "Boy"]}]))
    assert (got.family, got.given) == ("okafor", ())
