"""Scoring the index against data whose truth is known: FEBRL (the Freely Extensible Biomedical
Record Linkage data sets) now, synthetic London next.

FEBRL records (`rec-<n>-org` and its corrupted duplicates `rec-<n>-dup-<k>`) are read into the same
comparable fields as a Patient. FEBRL is Australian: its 4-digit postcodes are compared whole, and
its social security number stands in for the NHS number (it is corrupted like every other field,
which a real NHS number, checked by modulus 11, would not be).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharedcare.mpi.comparisons import features
from sharedcare.mpi.decide import Outcome, Thresholds, decide
from sharedcare.mpi.model import MatchModel
from sharedcare.mpi.normalise import (
    NHS_NUMBER_SYSTEM,
    Demographics,
    birth_date,
    family_key,
    given_words,
    name_words,
    nhs_number,
    postcode,
)

# Link thresholds (match probabilities) every evaluation also reports, to choose the threshold from.
SWEEP = (0.5, 0.9, 0.99, 0.999, 0.9999)


def febrl_records(path: Path) -> list[dict[str, Any]]:
    """The rows of a FEBRL CSV as `features` rows, with `unique_id` (rec_id) and `truth` (the
    original record's number, shared by its duplicates)."""
    rows: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        header = [h.strip() for h in next(reader)]
        for values in reader:
            rec = dict(zip(header, (v.strip() for v in values), strict=True))
            dob = rec["date_of_birth"]
            iso = f"{dob[:4]}-{dob[4:6]}-{dob[6:8]}" if len(dob) == 8 and dob.isdigit() else None
            demographics = Demographics(
                nhs_number=None, unverified_numbers=(), family=family_key(rec["surname"]),
                family_words=name_words(rec["surname"]), former_families=(), given=name_words(rec["given_name"]),
                birth_date=birth_date(iso), sex=None, postcode=rec["postcode"] or None)
            address = " ".join(name_words(f"{rec['street_number']} {rec['address_1']}")) or None
            row = features(demographics, address)
            row["nhs_number"] = rec["soc_sec_id"] or None
            row["nhs_number_checked"] = False  # no check digit: a mistyped one is not a second number
            row["postcode_sector"] = row["postcode_district"] = None  # UK postcode parts only
            row["unique_id"] = rec["rec_id"]
            row["truth"] = rec["rec_id"].split("-")[1]
            rows.append(row)
    return rows


def synth_records(truth: Path, *, kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every source record of a synthetic London (`DIR/truth/source-records.csv`) as `features` rows,
    with `unique_id` (source and local number) and `truth` (the person). Records of unidentified
    patients (`unknown-patient`: UNKNOWN UNKNOWN, merged by ADT A40, never by matching) are left out.
    An NHS number failing its check is dropped, as from a Patient."""
    sexes: dict[str, str] = {}
    with (truth / "people.csv").open(newline="", encoding="utf-8") as handle:
        for person in csv.DictReader(handle):
            sexes[person["person_id"]] = person["sex"]
    wanted = set(kinds) if kinds is not None else None
    rows: list[dict[str, Any]] = []
    with (truth / "source-records.csv").open(newline="", encoding="utf-8") as handle:
        for rec in csv.DictReader(handle):
            if "unknown-patient" in rec["variations"].split(";") or (wanted is not None and rec["kind"] not in wanted):
                continue
            sex = sexes.get(rec["person_id"])
            demographics = Demographics(
                nhs_number=nhs_number(rec["nhs_number"]), unverified_numbers=(), family=family_key(rec["family"]),
                family_words=name_words(rec["family"]), former_families=(), given=given_words([rec["given"]]),
                birth_date=birth_date(rec["birth_date"]), sex=sex if sex in ("male", "female") else None,
                postcode=postcode(rec["postcode"]))
            row = features(demographics)
            row["unique_id"] = f"{rec['source']}/{rec['local_id']}"
            row["truth"] = rec["person_id"]
            rows.append(row)
    return rows


def synth_patients(truth: Path) -> list[tuple[dict[str, Any], str]]:
    """Every source record of a synthetic London (`DIR/truth`) as the Patient its source would send
    (the source's local number, the NHS number as recorded, name, sex, birth date and home postcode),
    each with its true person: for storing through the index and scoring how it linked them."""
    sexes: dict[str, str] = {}
    with (truth / "people.csv").open(newline="", encoding="utf-8") as handle:
        for person in csv.DictReader(handle):
            sexes[person["person_id"]] = person["sex"]
    out: list[tuple[dict[str, Any], str]] = []
    with (truth / "source-records.csv").open(newline="", encoding="utf-8") as handle:
        for rec in csv.DictReader(handle):
            body: dict[str, Any] = {
                "resourceType": "Patient",
                "identifier": [{"system": f"https://example.org/{rec['source']}", "value": rec["local_id"]}],
                "name": [{"family": rec["family"], "given": [rec["given"]]}],
                "gender": sexes.get(rec["person_id"], "unknown")}
            if rec["nhs_number"]:
                body["identifier"].append({"system": NHS_NUMBER_SYSTEM, "value": rec["nhs_number"]})
            if rec["birth_date"]:
                body["birthDate"] = rec["birth_date"]
            if rec["postcode"]:
                body["address"] = [{"use": "home", "postalCode": rec["postcode"]}]
            out.append((body, rec["person_id"]))
    return out


def pairwise(linked_to: Iterable[tuple[str, str]]) -> tuple[Figures, int]:
    """Pairwise precision and recall of a clustering against the truth, from (cluster, true person)
    per record; and the number of clusters."""
    pairs = list(linked_to)

    def count(groups: Counter[Any]) -> int:
        return sum(n * (n - 1) // 2 for n in groups.values())
    right = count(Counter(pairs))
    linked, true = count(Counter(c for c, _ in pairs)), count(Counter(t for _, t in pairs))
    return Figures(right / linked if linked else 1.0, right / true if true else 1.0, linked, true), \
        len({c for c, _ in pairs})


@dataclass(frozen=True)
class Figures:
    precision: float
    recall: float
    linked: int
    true_pairs: int

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def true_pairs(tables: list[list[dict[str, Any]]]) -> set[tuple[str, str]]:
    """Every pair of records (across the two tables, or within the one) with the same truth."""
    if len(tables) == 2:
        by_truth: dict[str, list[str]] = {}
        for row in tables[1]:
            by_truth.setdefault(row["truth"], []).append(row["unique_id"])
        return {(a["unique_id"], b) for a in tables[0] for b in by_truth.get(a["truth"], [])}
    groups: dict[str, list[str]] = {}
    for row in tables[0]:
        groups.setdefault(row["truth"], []).append(row["unique_id"])
    return {tuple(sorted((a, b))) for ids in groups.values() for i, a in enumerate(ids) for b in ids[i + 1:]}  # type: ignore[misc]


def figures(linked: Iterable[tuple[str, str]], truth: set[tuple[str, str]], *, ordered: bool) -> Figures:
    """Precision and recall of the `linked` pairs against `truth` (pairs are compared in order when
    linking two tables, as sorted pairs when deduplicating one)."""
    got = {pair if ordered else tuple(sorted(pair)) for pair in linked}
    hits = len(got & truth)
    return Figures(hits / len(got) if got else 1.0, hits / len(truth) if truth else 1.0, len(got), len(truth))


@dataclass(frozen=True)
class Evaluation:
    """How the index did on data whose truth is known. `linked`: automatic links; `review_share`:
    the share of records in at least one pair sent to review."""

    links: Figures
    review_pairs: int
    review_share: float
    records: int
    top3: float  # of records with another record of their person: one is among their best three candidates
    # Precision and recall of automatic links had the link threshold been each of SWEEP instead.
    sweep: tuple[tuple[float, Figures], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"precision": round(self.links.precision, 5), "recall": round(self.links.recall, 5),
                "f1": round(self.links.f1, 5), "automatic_links": self.links.linked,
                "true_pairs": self.links.true_pairs, "review_pairs": self.review_pairs,
                "review_share": round(self.review_share, 5), "records": self.records,
                "true_person_in_top_three": round(self.top3, 5),
                "link_threshold_sweep": [{"link": t, "precision": round(f.precision, 5), "recall": round(f.recall, 5)}
                                         for t, f in self.sweep]}


def evaluate(model: MatchModel, splink_model: dict[str, Any], tables: list[list[dict[str, Any]]],
             thresholds: Thresholds) -> Evaluation:
    """Candidate pairs blocked as Splink blocks them, each decided by `decide`, against the truth."""
    from sharedcare.mpi.train import predict

    linking = len(tables) == 2
    by_id = {row["unique_id"]: row for table in tables for row in table}
    links: list[tuple[str, str]] = []
    review: list[tuple[str, str]] = []
    # Each record's candidates as `Patient/$match` would rank them (certainly-not left out), by weight.
    ranked: dict[str, list[tuple[float, str]]] = {}
    unguarded: list[tuple[float, tuple[str, str]]] = []  # pairs no guard held back, by probability
    for pair in predict({**splink_model, "link_type": "link_only" if linking else "dedupe_only"}, tables,
                        threshold=0.0):
        ids = (pair["unique_id_l"], pair["unique_id_r"])
        decision = decide(model, by_id[ids[0]], by_id[ids[1]], thresholds)
        if decision.outcome is Outcome.MATCH:
            links.append(ids)
        elif decision.outcome is Outcome.POSSIBLE:
            review.append(ids)
        if not decision.held_back:
            unguarded.append((decision.score.probability, ids))
        if decision.outcome is not Outcome.NO_MATCH:
            ranked.setdefault(ids[0], []).append((decision.score.weight, ids[1]))
            ranked.setdefault(ids[1], []).append((decision.score.weight, ids[0]))
    in_review = {i for pair in review for i in pair}
    truth = true_pairs(tables)
    partnered = {i for pair in truth for i in pair}
    found = sum(1 for rec in partnered if any(
        by_id[other]["truth"] == by_id[rec]["truth"] for _, other in sorted(ranked.get(rec, []), reverse=True)[:3]))
    sweep = tuple((t, figures([ids for p, ids in unguarded if p >= t], truth, ordered=linking)) for t in SWEEP)
    return Evaluation(figures(links, truth, ordered=linking), len(review),
                      len(in_review) / len(by_id) if by_id else 0.0, len(by_id),
                      found / len(partnered) if partnered else 1.0, sweep)
