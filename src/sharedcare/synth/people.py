"""The synthetic population: who lives where, with age, sex, ethnicity, deprivation and a GP.

Distributions (docs/synth.md gives each source; tests/spec/synth/test_people.py checks them within
stated tolerances):
- age and sex: London, Census 2021 (five-year bands);
- ethnicity: London, Census 2021, in the NHS ethnic category codes (A–S);
- borough: in proportion to its population (geography.py); the postcode district within it uniformly;
- deprivation: an IMD decile drawn around a typical decile for the borough (IMD 2019);
- death in the year before the as-of date by age band (roughly England's mortality);
- GP registration: nine in ten at a practice in their borough, the rest elsewhere in their ICS;
- moves: 12% moved home in the two years before the as-of date (their previous postcode kept);
- twins: about 3% of people are one of a pair (same family name, birth date, home and practice);
- registration with the practice: babies weeks after birth, half of movers after the move, 6% new
  arrivals in the last year, everyone else earlier.
NHS numbers come from the range reserved for synthetic and test patients (starting 9, never
issued), each with a valid modulus 11 check digit, unique within a population.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta

from nhs_number.validate import calculate_checksum

from sharedcare.synth.directory import Directory
from sharedcare.synth.geography import BOROUGHS, Borough
from sharedcare.synth.names import FAMILY, GIVEN_FEMALE, GIVEN_MALE

# (lowest age, highest age, per cent of Londoners): Census 2021.
AGE_BANDS: tuple[tuple[int, int, float], ...] = (
    (0, 4, 6.2), (5, 9, 6.0), (10, 14, 5.9), (15, 19, 5.4), (20, 24, 6.4), (25, 29, 8.6), (30, 34, 9.3),
    (35, 39, 8.6), (40, 44, 7.5), (45, 49, 6.6), (50, 54, 6.3), (55, 59, 5.7), (60, 64, 4.7), (65, 69, 3.6),
    (70, 74, 3.2), (75, 79, 2.2), (80, 84, 1.6), (85, 89, 0.9), (90, 99, 0.5),
)
FEMALE_SHARE = 0.51
# NHS ethnic category (code, display, per cent of Londoners): Census 2021.
ETHNICITY: tuple[tuple[str, str, float], ...] = (
    ("A", "White - British", 36.8),
    ("B", "White - Irish", 1.8),
    ("C", "White - Any other White background", 15.2),
    ("D", "Mixed - White and Black Caribbean", 1.5),
    ("E", "Mixed - White and Black African", 0.8),
    ("F", "Mixed - White and Asian", 1.2),
    ("G", "Mixed - Any other mixed background", 2.2),
    ("H", "Asian or Asian British - Indian", 7.5),
    ("J", "Asian or Asian British - Pakistani", 3.3),
    ("K", "Asian or Asian British - Bangladeshi", 3.7),
    ("L", "Asian or Asian British - Any other Asian background", 4.6),
    ("M", "Black or Black British - Caribbean", 3.9),
    ("N", "Black or Black British - African", 7.9),
    ("P", "Black or Black British - Any other Black background", 1.7),
    ("R", "Other Ethnic Groups - Chinese", 1.7),
    ("S", "Other Ethnic Groups - Any other ethnic group", 6.3),
)
# A typical IMD 2019 decile (1 = most deprived tenth of England) for each borough.
IMD_CENTRE = {"BDG": 2, "HCK": 2, "TWH": 2, "NWM": 3, "ISL": 3, "HGY": 3, "LBH": 3, "SWK": 3, "LEW": 3, "GRE": 3,
              "BRT": 3, "ENF": 4, "WFT": 4, "CMD": 4, "EAL": 4, "CRY": 4, "HNS": 4, "HMF": 4, "WSM": 4, "KEC": 5,
              "RDB": 5, "HIL": 5, "BNT": 6, "HRW": 6, "BXY": 6, "HAV": 6, "MRT": 6, "WND": 6, "BRY": 7, "STN": 7,
              "COL": 7, "KTT": 8, "RIC": 8}
# (lowest age, chance of dying within a year).
MORTALITY = ((0, 0.0005), (40, 0.002), (60, 0.008), (75, 0.035), (85, 0.12))
OWN_BOROUGH = 0.9  # registered with a practice in their own borough
MOVED_SHARE = 0.12  # moved home in the last two years (about one in eight Londoners a year move; assumption)
NEW_ARRIVALS = 0.06  # registered in the last year on arriving in London (assumption; London's population churns)
TWIN_SHARE = 0.016  # a person is followed by a twin: about 3% of people are twins (1.6% of births are twin births)
NHS_STEP = 48_271  # odd and not a multiple of 5: k -> k * NHS_STEP mod 10^8 visits every 8-digit number once


@dataclass(frozen=True)
class Person:
    person_id: str
    nhs_number: str
    given: str
    family: str
    sex: str  # female, male (FHIR administrative gender)
    birth_date: date
    ethnicity: str  # NHS ethnic category code
    borough: str
    ics: str
    postcode: str
    imd_decile: int
    practice: str  # ODS code of the GP practice
    died_on: date | None
    moved_on: date | None = None  # moved home on this date (within two years of the as-of date)
    previous_postcode: str | None = None  # the home before that move
    twin_of: str | None = None  # person_id of the twin born just before them
    registered_on: date | None = None  # joined their GP practice (people() always sets it)


class NhsNumbers:
    """Distinct valid NHS numbers from the synthetic range (9000000000–9999999999), in an order
    fixed by the seed."""

    def __init__(self, seed: int) -> None:
        self.k = random.Random(f"nhs:{seed}").randrange(10**8)  # noqa: S311 - reproducible, not secret
        self.start = self.k

    def __next__(self) -> str:
        while True:
            digits = f"9{self.k * NHS_STEP % 10**8:08d}"
            self.k = (self.k + 1) % 10**8
            if self.k == self.start:
                raise RuntimeError("the synthetic NHS number range is used up")
            check = calculate_checksum(digits)
            if check is not None and check < 10:
                return f"{digits}{check}"


def people(n: int, seed: int, as_of: date, found: Directory) -> Iterator[Person]:
    """`n` people, generated one at a time (memory does not grow with `n`). A twin follows the
    person they were born with: same family name, birth date, home and practice."""
    rng = random.Random(f"people:{seed}")  # noqa: S311 - reproducible synthetic data, not secrets
    ns = uuid.uuid5(uuid.NAMESPACE_URL, f"https://sharedcare.example/synth/{seed}/people")
    numbers = NhsNumbers(seed)
    weights = [b.population_k for b in BOROUGHS]
    in_ics = {b.ics: [c for o in BOROUGHS if o.ics == b.ics for c in found.practices[o.code]] for b in BOROUGHS}
    twin: Person | None = None
    for i in range(n):
        person_id = str(uuid.uuid5(ns, str(i)))
        female = rng.random() < FEMALE_SHARE
        given = rng.choice(GIVEN_FEMALE if female else GIVEN_MALE)
        sex = "female" if female else "male"
        if twin is not None:  # the second of a pair of twins
            while given == twin.given:  # twins are given different names
                given = rng.choice(GIVEN_FEMALE if female else GIVEN_MALE)
            person = replace(twin, person_id=person_id, nhs_number=next(numbers), given=given, sex=sex,
                             twin_of=twin.person_id)
            twin = None
            yield person
            continue
        borough: Borough = rng.choices(BOROUGHS, weights=weights)[0]
        low, high, _ = rng.choices(AGE_BANDS, weights=AGE_WEIGHTS)[0]
        age = rng.randint(low, high)
        birth = as_of - timedelta(days=age * 365 + rng.randrange(365))
        ethnicity = rng.choices(ETHNICITY, weights=ETHNICITY_WEIGHTS)[0][0]
        imd = min(10, max(1, IMD_CENTRE[borough.code] + round(rng.gauss(0, 1.8))))
        own = found.practices[borough.code]
        practice = rng.choice(own if rng.random() < OWN_BOROUGH else in_ics[borough.ics])
        dies = rng.random() < next(p for lowest, p in reversed(MORTALITY) if age >= lowest)
        died_on = as_of - timedelta(days=rng.randrange(365)) if dies else None
        postcode = _postcode(rng, borough)
        moved_on, previous = None, None
        if rng.random() < MOVED_SHARE:  # moved home in the last two years (the old address kept)
            moved_on = as_of - timedelta(days=rng.randrange(730))
            previous = _postcode(rng, rng.choices(BOROUGHS, weights=weights)[0])
            if moved_on <= birth:
                moved_on, previous = None, None
        person = Person(
            person_id=person_id, nhs_number=next(numbers), given=given, family=rng.choice(FAMILY), sex=sex,
            birth_date=birth, ethnicity=ethnicity, borough=borough.code, ics=borough.ics, postcode=postcode,
            imd_decile=imd, practice=practice, died_on=died_on if died_on and died_on > birth else None,
            moved_on=moved_on, previous_postcode=previous,
            registered_on=_registered(rng, birth, as_of, moved_on))
        if i + 1 < n and rng.random() < TWIN_SHARE:
            twin = person
        yield person


def _registered(rng: random.Random, birth: date, as_of: date, moved_on: date | None) -> date:
    """When they joined their practice: babies a few weeks after birth; half of those who moved, soon
    after the move; NEW_ARRIVALS new to London in the last year; everyone else earlier."""
    if birth > as_of - timedelta(days=365):
        return min(as_of, birth + timedelta(days=rng.randint(14, 42)))
    if moved_on is not None and rng.random() < 0.5:
        return min(as_of, moved_on + timedelta(days=rng.randint(0, 60)))
    if rng.random() < NEW_ARRIVALS:
        return as_of - timedelta(days=rng.randrange(365))
    earliest = max(birth, as_of - timedelta(days=20 * 365))
    return earliest + timedelta(days=rng.randrange(max(1, (as_of - timedelta(days=365) - earliest).days)))


def _postcode(rng: random.Random, borough: Borough) -> str:
    district = rng.choice(borough.districts)
    return f"{district} {rng.randint(1, 9)}{rng.choice(INWARD)}{rng.choice(INWARD)}"


INWARD = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in the inward part of a postcode
AGE_WEIGHTS = [b[2] for b in AGE_BANDS]
ETHNICITY_WEIGHTS = [e[2] for e in ETHNICITY]
