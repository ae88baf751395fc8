"""From a pair's score to what the index does with it (issue 6, item 2).

- **match**: link automatically (FHIR match grade `certain`);
- **possible match**: a person decides, in the review queue (`probable` when the score alone would
  have linked and a guard held it back, `possible` otherwise);
- **no match**: keep apart (`certainly-not`).

Guards hold a pair back from an automatic link whatever its score, because a false link shows one
person's record to the clinician treating another:
- two different NHS numbers that both pass their check (a mistyped number that happens to pass is
  someone else's possible number: review, never a silent link);
- first given names that do not agree at any level (twins share a family name, a date of birth and a
  home; a model trained without labels learns them as matches);
- different sex (male against female; twins again);
- no NHS number in common and homes in different postcode districts: two people with the same name
  and date of birth.

Different first names together with two checked NHS numbers, or with different sexes, are two people
(twins, siblings): no match, not review.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sharedcare.mpi.comparisons import Features
from sharedcare.mpi.model import MatchModel, Score


class Outcome(StrEnum):
    MATCH = "match"
    POSSIBLE = "possible-match"
    NO_MATCH = "no-match"


# http://terminology.hl7.org/CodeSystem/match-grade
MATCH_GRADE_SYSTEM = "http://terminology.hl7.org/CodeSystem/match-grade"


@dataclass(frozen=True)
class Thresholds:
    """Match probabilities: at or above `link` a pair links (unless held back), at or above `review`
    it goes to review."""

    link: float = 0.99
    review: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.review <= self.link < 1.0:
            raise ValueError("thresholds must satisfy 0 < review <= link < 1")


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    grade: str  # certain, probable, possible, certainly-not
    score: Score
    held_back: tuple[str, ...]  # the guards that stopped an automatic link


def _checked_numbers(left: Features, right: Features) -> tuple[str, str] | None:
    """Both records' NHS numbers, when both carry one that passed its check."""
    if left.get("nhs_number_checked", True) and right.get("nhs_number_checked", True) \
            and left.get("nhs_number") and right.get("nhs_number"):
        return str(left["nhs_number"]), str(right["nhs_number"])
    return None


def guards(model: MatchModel, left: Features, right: Features, score: Score) -> tuple[str, ...]:
    held: list[str] = []
    numbers = _checked_numbers(left, right)
    if numbers is not None and numbers[0] != numbers[1]:
        held.append("different-nhs-numbers")
    given_differ = score.levels["given"] == len(model.weights["given"]) - 1
    # The same NHS number and no disagreeing date of birth (the same, missing, or day and month
    # swapped): a first name written wrongly, not a twin (twins never share a number) nor a baby on its
    # mother's number (their birth dates differ).
    same_person_keys = score.levels["nhs_number"] == 0 and score.levels["birth_date"] in (-1, 0, 1)
    if given_differ and not same_person_keys:
        held.append("given-names-differ")
    if score.levels["sex"] == len(model.weights["sex"]) - 1:
        held.append("sex-differs")
    if score.levels["nhs_number"] != 0 and score.levels["postcode"] == len(model.weights["postcode"]) - 1:
        # Nothing but a name and a date of birth in common: in a city of nine million, two people
        # share both more often than a model trained on a smaller population expects.
        held.append("name-and-birth-date-only")
    return tuple(held)


def decide(model: MatchModel, left: Features, right: Features, thresholds: Thresholds) -> Decision:
    score = model.score(left, right)
    held = guards(model, left, right, score)
    if "given-names-differ" in held and ("different-nhs-numbers" in held or "sex-differs" in held):
        # Different first names, and two checked NHS numbers or two sexes: two people (twins, siblings).
        return Decision(Outcome.NO_MATCH, "certainly-not", score, held)
    if score.probability >= thresholds.link and not held:
        return Decision(Outcome.MATCH, "certain", score, held)
    if score.probability >= thresholds.review:
        return Decision(Outcome.POSSIBLE, "probable" if score.probability >= thresholds.link else "possible",
                        score, held)
    return Decision(Outcome.NO_MATCH, "certainly-not", score, held)
