"""The synthetic population (issue 4): who lives where, with age, sex, ethnicity, deprivation and a
GP practice, calibrated against London's Census 2021 figures within stated tolerances, with NHS
numbers from the range never issued to real people, and the GP practices' Patient records agreeing
with the truth file."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from nhs_number import is_valid

from sharedcare.fhir.validation import validate
from sharedcare.synth import directory, generate
from sharedcare.synth.geography import BOROUGHS, LONDON_POPULATION_K
from sharedcare.synth.people import AGE_BANDS, ETHNICITY, FEMALE_SHARE, people
from tests.spec.synth.reading import gp_patients

AS_OF = date(2026, 4, 1)
N = 20_000


@pytest.fixture(scope="module")
def population() -> list[Any]:
    return list(people(N, 1, AS_OF, directory.build(N, 1)))


def _share(count: int) -> float:
    return 100 * count / N


def test_age_sex_and_ethnicity_follow_the_census_within_tolerance(population: list[Any]) -> None:
    """Census 2021, London: each five-year age band within 1 percentage point, women 51% ± 1.5,
    each ethnic category within 1 point (White British, 36.8%, within 1.5)."""
    ages = Counter(next(i for i, (lo, hi, _) in enumerate(AGE_BANDS) if lo <= (AS_OF - p.birth_date).days // 365 <= hi)
                   for p in population)
    total = sum(b[2] for b in AGE_BANDS)
    for i, (_, _, pct) in enumerate(AGE_BANDS):
        assert abs(_share(ages[i]) - 100 * pct / total) < 1.0, AGE_BANDS[i]
    assert abs(_share(sum(p.sex == "female" for p in population)) - 100 * FEMALE_SHARE) < 1.5
    found = Counter(p.ethnicity for p in population)
    total = sum(e[2] for e in ETHNICITY)
    for code, _, pct in ETHNICITY:
        assert abs(_share(found[code]) - 100 * pct / total) < (1.5 if code == "A" else 1.0), code


def test_people_live_in_boroughs_in_proportion_and_deprivation_follows_the_borough(population: list[Any]) -> None:
    where = Counter(p.borough for p in population)
    for b in BOROUGHS:
        assert abs(_share(where[b.code]) - 100 * b.population_k / LONDON_POPULATION_K) < 0.6, b.name

    def mean_imd(code: str) -> float:
        deciles = [p.imd_decile for p in population if p.borough == code]
        return sum(deciles) / len(deciles)
    assert mean_imd("TWH") + 2 < mean_imd("RIC")
    assert all(1 <= p.imd_decile <= 10 for p in population)
    assert all(p.postcode.split()[0] in next(b.districts for b in BOROUGHS if b.code == p.borough)
               for p in population)


def test_nhs_numbers_are_valid_distinct_and_never_issued(population: list[Any]) -> None:
    numbers = [p.nhs_number for p in population]
    assert len(set(numbers)) == len(numbers)
    assert all(n.startswith("9") and len(n) == 10 and is_valid(n) for n in numbers)


def test_deaths_and_registrations(population: list[Any]) -> None:
    died = [p for p in population if p.died_on is not None]
    assert 0.3 < _share(len(died)) < 1.5  # about 0.7% of Londoners die in a year
    assert all(p.birth_date < p.died_on <= AS_OF for p in died)

    def death_rate(low: int, high: int) -> float:
        group = [p for p in population if low * 365 <= (AS_OF - p.birth_date).days < high * 365]
        return sum(p.died_on is not None for p in group) / len(group)
    assert death_rate(85, 200) > 20 * death_rate(0, 40)  # mortality rises steeply with age
    practices = {code: b for b, codes in directory.build(N, 1).practices.items() for code in codes}
    assert all(p.practice in practices for p in population)
    at_home = sum(practices[p.practice] == p.borough for p in population)
    assert 0.85 < at_home / N < 0.95


def test_twins_share_a_birth_date_family_home_and_practice_but_not_an_nhs_number(population: list[Any]) -> None:
    """About 3% of people are twins (1.6% of births are twin births): a classic trap for matching."""
    by_id = {p.person_id: p for p in population}
    twins = [p for p in population if p.twin_of is not None]
    assert 1.2 < _share(len(twins)) < 2.2  # the second of each pair: about 1.6% of people
    for second in twins:
        first = by_id[second.twin_of]
        assert (first.family, first.birth_date, first.postcode, first.practice) == \
            (second.family, second.birth_date, second.postcode, second.practice)
        assert first.nhs_number != second.nhs_number
        assert first.given != second.given


def test_some_people_moved_home_in_the_last_two_years(population: list[Any]) -> None:
    """tests/spec/synth/test_feeds.py checks that the GP record keeps the old address."""
    moved = [p for p in population if p.moved_on is not None]
    assert 9 < _share(len(moved)) < 15  # 12% moved in the two years before the as-of date
    assert all(p.birth_date < p.moved_on <= AS_OF and p.previous_postcode for p in moved)


def test_people_registered_with_their_practice_before_the_as_of_date_some_of_them_this_year(
        population: list[Any]) -> None:
    """Babies register within six weeks of birth; about 6% of others are new arrivals this year, and
    half of those who moved re-registered after the move: 8–16% of people registered in the last year."""
    assert all(p.birth_date <= p.registered_on <= AS_OF for p in population)
    babies = [p for p in population if (AS_OF - p.birth_date).days < 365]
    assert babies
    assert all((p.registered_on - p.birth_date).days <= 42 for p in babies)
    recent = [p for p in population if (AS_OF - p.registered_on).days < 365 <= (AS_OF - p.birth_date).days]
    assert 8 < _share(len(recent)) < 16


def test_the_gp_records_validate_and_agree_with_the_truth_file(tmp_path: Path) -> None:
    generate(500, 2, AS_OF, tmp_path)
    with (tmp_path / "truth" / "people.csv").open(encoding="utf-8") as f:
        truth = {row["nhs_number"]: row for row in csv.DictReader(f)}
    patients = gp_patients(tmp_path)
    assert len(patients) == len(truth) == 500
    for patient in patients:
        assert [i for i in validate(patient) if i.severity in ("error", "fatal")] == []
        row = truth[patient["identifier"][0]["value"]]
        assert patient["generalPractitioner"][0]["identifier"]["value"] == row["practice"]
        assert patient["birthDate"] == row["birth_date"]
        assert patient.get("deceasedDateTime", "") == row["died_on"]
        assert patient["name"][0]["family"] == row["family"]
        registered = [e["valueDate"] for e in patient["extension"] if e["url"].endswith("gp-registration-date")]
        assert registered == [row["registered_on"]]
