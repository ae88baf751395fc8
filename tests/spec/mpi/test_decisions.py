"""What the index does with a pair of records (issue 6, item 2), with the model shipped in the package.

A false link shows one person's record to the clinician treating another, so some pairs are never
linked automatically whatever their score: they go to review, or are kept apart.
"""

from __future__ import annotations

from typing import Any

import pytest

from sharedcare.mpi import packaged
from sharedcare.mpi.comparisons import features
from sharedcare.mpi.decide import Decision, Outcome, Thresholds, decide
from sharedcare.mpi.normalise import NHS_NUMBER_SYSTEM, from_patient

MIA = "9434765919"
ZOE = "9434765927"  # Mia's twin
MOTHER = "9434765935"


def record(given: str, family: str, birth: str, postcode: str | None = "E1 6AN", nhs: str | None = None,
           sex: str = "female") -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family, "given": [given]}],
                               "birthDate": birth, "gender": sex}
    if nhs:
        patient["identifier"] = [{"system": NHS_NUMBER_SYSTEM, "value": nhs}]
    if postcode:
        patient["address"] = [{"use": "home", "postalCode": postcode}]
    return features(from_patient(patient))


def judge(left: dict[str, Any], right: dict[str, Any]) -> Decision:
    shipped = packaged.load()
    return decide(shipped.model, left, right, shipped.thresholds)


def test_the_shipped_model_is_versioned_and_says_what_it_was_trained_on() -> None:
    shipped = packaged.load()
    assert shipped.version == "2026-11-29.1"
    assert "synthetic London" in shipped.trained_on
    assert shipped.thresholds == Thresholds(link=0.99, review=0.5)


def test_the_same_person_written_the_same_way_links() -> None:
    got = judge(record("Mia", "Thomas", "2019-03-04", nhs=MIA), record("Mia", "Thomas", "2019-03-04", nhs=MIA))
    assert (got.outcome, got.grade) == (Outcome.MATCH, "certain")


def test_slips_of_real_records_still_link() -> None:
    """A nickname, a typo in the family name and day and month of birth swapped, the NHS number the
    same: the same person."""
    got = judge(record("William", "Okonkwo", "1960-04-07", nhs=MIA, sex="male"),
                record("Bill", "Okonkow", "1960-07-04", nhs=MIA, sex="male"))
    assert got.outcome is Outcome.MATCH


def test_given_and_family_names_written_the_wrong_way_round_still_link() -> None:
    got = judge(record("Mia", "Thomas", "1980-03-04", nhs=MIA), record("Thomas", "Mia", "1980-03-04", nhs=MIA))
    assert got.outcome is Outcome.MATCH


def test_twins_with_both_nhs_numbers_are_kept_apart() -> None:
    got = judge(record("Mia", "Thomas", "2019-03-04", nhs=MIA), record("Zoe", "Thomas", "2019-03-04", nhs=ZOE))
    assert (got.outcome, got.grade) == (Outcome.NO_MATCH, "certainly-not")


def test_twins_of_different_sex_are_kept_apart_even_without_nhs_numbers() -> None:
    got = judge(record("Mia", "Thomas", "2019-03-04", nhs=MIA), record("Leo", "Thomas", "2019-03-04", sex="male"))
    assert got.outcome is Outcome.NO_MATCH


def test_twins_of_the_same_sex_without_both_numbers_are_never_linked_automatically() -> None:
    """Same family name, birth date and home, different first names, one NHS number missing: a twin
    or the same person with a first name written wholly wrongly. A person decides."""
    got = judge(record("Mia", "Thomas", "2019-03-04", nhs=MIA), record("Zoe", "Thomas", "2019-03-04"))
    assert got.outcome is Outcome.POSSIBLE
    assert "given-names-differ" in got.held_back


def test_two_different_valid_nhs_numbers_never_link_automatically() -> None:
    """A number mistyped into another valid one is someone else's possible number: review, never a
    silent link, however well the rest agrees."""
    got = judge(record("Mia", "Thomas", "1980-03-04", nhs=MIA), record("Mia", "Thomas", "1980-03-04", nhs=ZOE))
    assert (got.outcome, got.grade) == (Outcome.POSSIBLE, "probable")
    assert got.held_back == ("different-nhs-numbers",)


def test_an_invalid_nhs_number_is_no_evidence_either_way() -> None:
    mistyped = record("Mia", "Thomas", "1980-03-04", nhs="9434765918")  # fails its check digit
    assert mistyped["nhs_number"] is None
    assert judge(record("Mia", "Thomas", "1980-03-04", nhs=MIA), mistyped).score.levels["nhs_number"] == -1


def test_a_baby_on_its_mothers_nhs_number_is_not_linked_to_her() -> None:
    """An A&E record of a newborn under the mother's number and name: the number agrees, the birth
    date and first name do not."""
    got = judge(record("Grace", "Adeyemi", "1990-05-06", nhs=MOTHER),
                record("Baby", "Adeyemi", "2026-11-20", nhs=MOTHER))
    assert got.outcome is not Outcome.MATCH


def test_same_name_and_birth_date_in_different_districts_without_a_shared_number_go_to_review() -> None:
    got = judge(record("Mia", "Thomas", "1980-03-04", postcode="E1 6AN", nhs=MIA),
                record("Mia", "Thomas", "1980-03-04", postcode="SW19 2AA"))
    assert got.outcome is Outcome.POSSIBLE
    assert got.held_back == ("name-and-birth-date-only",)


def test_a_changed_family_name_is_still_found() -> None:
    married = features(from_patient({"resourceType": "Patient", "birthDate": "1985-02-03", "gender": "female",
                                     "name": [{"use": "official", "family": "Begum", "given": ["Amina"]},
                                              {"use": "maiden", "family": "Khan", "given": ["Amina"]}],
                                     "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": MIA}],
                                     "address": [{"use": "home", "postalCode": "E1 6AN"}]}))
    got = judge(married, record("Amina", "Khan", "1985-02-03", nhs=MIA))
    assert got.score.levels["family"] == 2  # a former family name shared
    assert got.outcome is Outcome.MATCH


def test_different_people_are_no_match() -> None:
    got = judge(record("Mia", "Thomas", "1980-03-04", nhs=MIA),
                record("Kwame", "Mensah", "1955-11-30", postcode="N1 9GU", nhs=ZOE, sex="male"))
    assert (got.outcome, got.grade) == (Outcome.NO_MATCH, "certainly-not")


@pytest.mark.parametrize(("link", "review"), [(0.5, 0.9), (1.0, 0.5), (0.9, 0.0)])
def test_thresholds_must_be_ordered_probabilities(link: float, review: float) -> None:
    with pytest.raises(ValueError, match="thresholds"):
        Thresholds(link=link, review=review)
