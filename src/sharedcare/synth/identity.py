"""How each source records a person: its own local number, and the slips that real records carry.

The GP record is the reference (verified NHS number, current address). Other sources get the NHS
number right most of the time but not always: unknown patients in the emergency department, crews
who could not trace the patient, social care records that never held it, and the occasional mistyped
digit. Names carry typos, nicknames, hyphenated double-barrelled family names and swapped given and
family names; birth dates the odd day-month swap; addresses lag behind a move. Every slip is named in
`Recorded.variations` and written to truth/source-records.csv, so the patient index can be scored.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from nhs_number.validate import is_valid

from sharedcare.synth.names import FAMILY
from sharedcare.synth.people import Person
from sharedcare.synth.story import Recorded


# Shares per kind of source (assumptions; docs/synth.md): NHS number missing, mistyped; name slips.
@dataclass(frozen=True)
class Habits:
    missing: float
    mistyped: float
    typo: float = 0.02
    nickname: float = 0.03
    hyphenated: float = 0.01
    swapped: float = 0.01
    dob_swap: float = 0.004
    stale_address: float = 0.3  # of people who moved: the source still has the old address
    checks_digit: bool = True  # the system refuses a number failing modulus 11, so only passing slips get in


HABITS = {
    "hospital": Habits(missing=0.03, mistyped=0.005),
    "mental-health": Habits(missing=0.03, mistyped=0.005),
    "ambulance": Habits(missing=0.25, mistyped=0.01, typo=0.05, nickname=0.06, dob_swap=0.01),
    "nhs111": Habits(missing=0.2, mistyped=0.01, typo=0.04, nickname=0.05),
    "social-care": Habits(missing=0.15, mistyped=0.01, typo=0.03, nickname=0.04, stale_address=0.5,
                          checks_digit=False),
}

NICKNAMES = {
    "William": "Bill", "Thomas": "Tom", "James": "Jim", "Daniel": "Dan", "Michael": "Mike", "David": "Dave",
    "Peter": "Pete", "John": "Jack", "Jacob": "Jake", "Charlie": "Chaz", "Harry": "Hal", "Oliver": "Ollie",
    "Arthur": "Art", "Dennis": "Den", "Marcus": "Marc", "Muhammad": "Mohammed", "Ibrahim": "Ibby",
    "Jessica": "Jess", "Deborah": "Debbie", "Margaret": "Maggie", "Patricia": "Pat", "Rachel": "Rach",
    "Bethany": "Beth", "Hannah": "Hanna", "Amelia": "Millie", "Olivia": "Liv", "Sophia": "Sophie",
    "Emily": "Em", "Khadija": "Khadijah", "Fatima": "Fatma", "Maryam": "Mariam", "Zofia": "Zosia",
    "Joan": "Joanie", "Eleni": "Helen", "Ayesha": "Aisha", "Yasmin": "Yasmine",
}


def recorded(person: Person, kind: str, source: str, local_id: str, rng: random.Random) -> Recorded:
    """`person` as a source of `kind` (a key of HABITS) records them."""
    habits = HABITS[kind]
    variations: list[str] = []
    nhs: str | None = person.nhs_number
    status = "correct"
    draw = rng.random()
    if draw < habits.missing:
        nhs, status = None, "missing"
    elif draw < habits.missing + habits.mistyped:
        nhs, status = _mistype(person.nhs_number, rng, habits.checks_digit), "mistyped"
    given, family = person.given, person.family
    if rng.random() < habits.nickname and given in NICKNAMES:
        given = NICKNAMES[given]
        variations.append("nickname")
    if rng.random() < habits.typo:
        if rng.random() < 0.5:
            given = _typo(given, rng)
        else:
            family = _typo(family, rng)
        variations.append("typo")
    if rng.random() < habits.hyphenated:
        family = f"{family}-{rng.choice(FAMILY)}"
        variations.append("hyphenated")
    if rng.random() < habits.swapped:
        given, family = family, given
        variations.append("swapped-names")
    birth = person.birth_date
    if birth.day <= 12 and birth.day != birth.month and rng.random() < habits.dob_swap:
        birth = birth.replace(month=birth.day, day=birth.month)
        variations.append("dob-swap")
    postcode = person.postcode
    if person.previous_postcode is not None and rng.random() < habits.stale_address:
        postcode = person.previous_postcode
        variations.append("old-address")
    return Recorded(source=source, local_id=local_id, nhs_number=nhs, nhs_status=status, given=given, family=family,
                    birth_date=birth, sex=person.sex, postcode=postcode, variations=tuple(variations))


def _mistype(nhs: str, rng: random.Random, passing: bool) -> str:
    """A slip in the NHS number. Modulus 11 catches every single wrong digit and every swap of
    neighbours, so a system that checks it only lets through a number with two digits wrong that
    happens to pass: someone else's possible number, the dangerous kind. A system that does not
    check keeps a single slip (one digit wrong, or two neighbours swapped)."""
    while True:
        digits = list(nhs)
        i = rng.randrange(1, 9)
        if not passing and digits[i] != digits[i + 1] and rng.random() < 0.5:
            digits[i], digits[i + 1] = digits[i + 1], digits[i]
        else:
            for j in (i, rng.randrange(1, 9)) if passing else (i,):
                digits[j] = rng.choice([d for d in "0123456789" if d != digits[j]])
        typed = "".join(digits)
        if typed != nhs and (not passing or is_valid(typed)):
            return typed


def _typo(name: str, rng: random.Random) -> str:
    """One keying slip: a letter dropped, doubled or two neighbours transposed."""
    if len(name) < 4:
        return name + name[-1]
    i = rng.randrange(1, len(name) - 1)
    choice = rng.randrange(3)
    if choice == 0:
        return name[:i] + name[i + 1:]
    if choice == 2 and name[i] != name[i + 1]:
        return name[:i] + name[i + 1] + name[i] + name[i + 2:]
    return name[:i] + name[i] + name[i:]
