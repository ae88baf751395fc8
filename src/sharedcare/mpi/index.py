"""Linking each source Patient to a person (issue 6, items 1 to 3): what to do with one record, given
the stored records its blocking keys find. Pure: the tables are read and written by
`storage/mpi_store.py`, in the Patient's own write transaction.

A record joins a person only when
- it is a certain match (`decide.py`: p >= the link threshold, no guard holding it back) with at least
  one of that person's records, and
- no record of that person is certainly another person (different checked NHS numbers, or twins' tell:
  different first names with different numbers or sex) or held back from it by a guard.

Otherwise it starts a new person. Every possible match (and every certain match to a person it could
not join) goes to the review queue, best first, for a member of staff to link or keep apart. When the
record certainly matches records of two different persons it joins the better one, and the other is
queued: those persons may be one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sharedcare.mpi.comparisons import Features
from sharedcare.mpi.decide import Decision, Outcome, Thresholds, decide
from sharedcare.mpi.model import MatchModel
from sharedcare.mpi.normalise import Demographics

# Candidates read per blocking key (the commonest names are shared by hundreds in a city).
PER_KEY = 50
# Possible matches queued for review per record, best first.
REVIEWS_PER_RECORD = 5
# The fields left out of a restricted-address record's features when they are compared for a caller
# ($match): its home must not be found, or confirmed, by what is typed in.
PLACE_FIELDS = ("postcode", "postcode_sector", "postcode_district", "address")


# The blocking keys, as mpi_record's columns: records sharing any one are compared.
KEY_COLUMNS = ("k_nhs", "k_birth_sound", "k_birth_given", "k_name", "k_place")


def keys(d: Demographics, f: Features) -> dict[str, str | None]:
    """A record's blocking keys (KEY_COLUMNS): its NHS number; birth date with the family name's
    sound; birth date with the first given name; family, first given name and birth year; postcode
    with birth year."""
    birth = f.get("birth_date")
    year = d.birth_date[:4] if d.birth_date else None
    given1 = f.get("given1")
    return {
        "k_nhs": f.get("nhs_number"),
        "k_birth_sound": f"{birth}|{f['family_sound']}" if birth and f.get("family_sound") else None,
        "k_birth_given": f"{birth}|{given1}" if birth and given1 else None,
        "k_name": f"{f['family']}|{given1}|{year}" if f.get("family") and given1 and year else None,
        "k_place": f"{f['postcode']}|{year}" if f.get("postcode") and year else None,
    }


def with_trace(f: Mapping[str, Any], status: str | None, number: str | None) -> Features:
    """A record's features as the index compares them, after national tracing: a number PDS found for a
    record without one is used (`traced`); a number PDS does not hold for this person is not
    (`mismatch`). The source's own features are kept as written."""
    if status == "traced" and number:
        return {**f, "nhs_number": number, "nhs_number_checked": True}
    if status == "mismatch":
        return {**f, "nhs_number": None, "nhs_number_checked": False}
    return dict(f)


def shown(f: Mapping[str, Any], restricted: bool) -> Features:
    """A stored record's features as compared for a caller: a restricted address's place left out."""
    if not restricted:
        return dict(f)
    return {k: (None if k in PLACE_FIELDS else v) for k, v in f.items()}


@dataclass(frozen=True)
class Candidate:
    res_id: str
    person_id: str | None
    features: Features


@dataclass(frozen=True)
class Review:
    other_id: str
    decision: Decision


@dataclass
class Plan:
    """What to do with one record: join `person` (None: a new person), by `decision` against the
    best record of that person; queue `reviews`."""

    person: str | None
    decision: Decision | None
    reviews: list[Review] = field(default_factory=list)


# Guards that say two records are different people (not merely that too little agrees).
IDENTITY_GUARDS = frozenset({"different-nhs-numbers", "given-names-differ", "sex-differs"})


def _blocks(model: MatchModel, thresholds: Thresholds, record: Features, member: Features) -> bool:
    """Whether `member` being in a person keeps `record` out of it automatically: an identity guard
    holds between them (a person's other records may be too thin to score high and still be theirs)."""
    return bool(IDENTITY_GUARDS.intersection(decide(model, record, member, thresholds).held_back))


def plan(model: MatchModel, thresholds: Thresholds, record: Features, candidates: Sequence[Candidate],
         members: Callable[[str], Sequence[Candidate]], *, apart: frozenset[str] = frozenset()) -> Plan:
    """Decide one record against its candidates. `members(person)` gives every record of a person
    (read only for persons the record certainly matches). A person holding a record staff decided is
    not this one (`apart`) is never joined, nor queued again."""
    decided = [(c, decide(model, record, c.features, thresholds)) for c in candidates if c.res_id not in apart]
    best: dict[str, tuple[Candidate, Decision]] = {}
    for c, d in decided:
        if d.outcome is Outcome.MATCH and c.person_id is not None:
            held = best.get(c.person_id)
            if held is None or d.score.weight > held[1].score.weight:
                best[c.person_id] = (c, d)
    joinable = [(person, c, d) for person, (c, d) in best.items()
                if not any(m.res_id in apart
                           or (m.res_id != c.res_id and _blocks(model, thresholds, record, m.features))
                           for m in members(person))]
    joinable.sort(key=lambda t: -t[2].score.weight)
    chosen = joinable[0] if joinable else None
    joined = chosen[0] if chosen else None
    reviews = [Review(c.res_id, d) for c, d in decided
               if c.person_id != joined and (d.outcome is Outcome.POSSIBLE or d.outcome is Outcome.MATCH)]
    # One review per other person is enough to bring the two together; the best record stands for it.
    seen: set[str | None] = set()
    kept: list[Review] = []
    by_id = {c.res_id: c for c in candidates}
    for r in sorted(reviews, key=lambda r: -r.decision.score.weight):
        person = by_id[r.other_id].person_id
        if person is not None and person in seen:
            continue
        seen.add(person)
        kept.append(r)
    return Plan(joined, chosen[2] if chosen else None, kept[:REVIEWS_PER_RECORD])
