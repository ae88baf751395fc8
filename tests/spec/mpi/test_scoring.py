"""Scoring pairs (issue 6, item 1): Fellegi–Sunter match weights trained with Splink, used online.

The online scorer reads Splink's own model file and must score every pair exactly as Splink does;
trained without labels on FEBRL 4 (5,000 records against 5,000 corrupted copies), it links them with
precision and recall of at least 0.995 at a match probability of 0.5.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from sharedcare.mpi.comparisons import COMPARISONS, features
from sharedcare.mpi.evaluate import febrl_records, figures, true_pairs
from sharedcare.mpi.model import MatchModel, ModelError, fill_untrained, probability
from sharedcare.mpi.normalise import from_patient
from tests.support.conformance import conformance_path


def hand_made_model(prior: float = 0.001) -> dict[str, Any]:
    """A model in Splink's form with every level's m and u set by hand: each level's weight is
    log2(m/u) = its index's distance from the middle, so the arithmetic is easy to follow."""
    comparisons = []
    for comparison in COMPARISONS:
        levels: list[dict[str, Any]] = [{"sql_condition": comparison.null_sql(), "label_for_charts": "missing",
                                         "is_null_level": True}]
        for i, label in enumerate([lvl.label for lvl in comparison.levels] + ["else"]):
            levels.append({"label_for_charts": label, "m_probability": 2.0 ** -i, "u_probability": 2.0 ** -3})
        comparisons.append({"output_column_name": comparison.name, "comparison_levels": levels})
    return {"probability_two_random_records_match": prior, "comparisons": comparisons}


def person(**fields: Any) -> dict[str, Any]:
    return features(from_patient({"resourceType": "Patient", **fields}))


ANN = {"identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
       "name": [{"family": "Smith", "given": ["Ann"]}], "birthDate": "1970-01-31", "gender": "female",
       "address": [{"use": "home", "postalCode": "E1 6AN"}]}


def test_a_pair_scores_the_prior_plus_the_weight_of_each_level_it_falls_in() -> None:
    model = MatchModel(hand_made_model(prior=0.2))
    same = model.score(person(**ANN), person(**ANN))
    # Every comparison agrees exactly (level 0: weight log2(1 / 0.125) = 3) except the address, missing.
    compared = [c.name for c in COMPARISONS if c.name != "address"]
    assert same.levels == {**dict.fromkeys(compared, 0), "address": -1}
    assert same.weight == pytest.approx(math.log2(0.2 / 0.8) + 3 * len(compared))
    assert same.probability == pytest.approx(probability(same.weight))


def test_a_nickname_and_a_swapped_day_and_month_fall_in_their_own_levels() -> None:
    model = MatchModel(hand_made_model())
    other = {**ANN, "name": [{"family": "Smith", "given": ["Annie"]}], "birthDate": "1970-01-31"}
    assert model.score(person(**ANN), person(**other)).levels["given"] == 2  # nickname, after exact and swapped
    swapped = {**ANN, "birthDate": "1970-12-01"}
    day_month = {**ANN, "birthDate": "1970-01-12"}
    assert model.score(person(**swapped), person(**day_month)).levels["birth_date"] == 1


def test_a_missing_value_is_no_evidence_either_way() -> None:
    model = MatchModel(hand_made_model())
    without_number = {k: v for k, v in ANN.items() if k != "identifier"}
    assert model.score(person(**ANN), person(**without_number)).levels["nhs_number"] == -1


def test_probabilities_stay_between_0_and_1_at_any_weight() -> None:
    assert probability(0) == 0.5
    assert probability(2000) == 1.0
    assert probability(-2000) == 0.0
    assert probability(3) == pytest.approx(8 / 9)


def test_a_model_for_other_comparisons_or_levels_is_refused() -> None:
    model = hand_made_model()
    model["comparisons"] = model["comparisons"][1:]
    with pytest.raises(ModelError, match="compares"):
        MatchModel(model)
    model = hand_made_model()
    model["comparisons"][0]["comparison_levels"][1]["label_for_charts"] = "something else"
    with pytest.raises(ModelError, match="levels"):
        MatchModel(model)


def test_an_untrained_level_is_refused_until_it_is_filled_as_no_evidence() -> None:
    model = hand_made_model()
    level = model["comparisons"][0]["comparison_levels"][1]
    level["m_probability"] = None
    with pytest.raises(ModelError, match="no trained"):
        MatchModel(model)
    filled = fill_untrained(model)
    assert MatchModel(filled).weights[COMPARISONS[0].name][0] == 0.0
    assert level["m_probability"] is None  # the original is left as it was


# -- trained with Splink on FEBRL 4 ----------------------------------------------------------------

@pytest.fixture(scope="module")
def febrl4() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    from sharedcare.mpi.train import train

    left = febrl_records(conformance_path("febrl", "dataset4a.csv"))
    right = febrl_records(conformance_path("febrl", "dataset4b.csv"))
    return left, right, train([left, right])


@pytest.mark.slow
def test_the_online_scorer_agrees_with_splink_on_every_pair(febrl4: Any) -> None:
    from sharedcare.mpi.train import predict

    left, right, model = febrl4
    by_id = {row["unique_id"]: row for row in left + right}
    scorer = MatchModel(model)
    pairs = predict(model, [left, right])
    assert len(pairs) > 5_000
    assert sum(p["match_probability"] < 0.01 for p in pairs) > 500  # every blocked pair, not only likely matches
    worst = max(abs(scorer.score(by_id[p["unique_id_l"]], by_id[p["unique_id_r"]]).weight - p["match_weight"])
                for p in pairs)
    assert worst < 1e-9


@pytest.mark.slow
def test_febrl4_links_with_precision_and_recall_of_at_least_0_995(febrl4: Any) -> None:
    from sharedcare.mpi.train import predict

    left, right, model = febrl4
    by_id = {row["unique_id"]: row for row in left + right}
    scorer = MatchModel(model)
    linked = [(p["unique_id_l"], p["unique_id_r"]) for p in predict(model, [left, right])
              if scorer.score(by_id[p["unique_id_l"]], by_id[p["unique_id_r"]]).probability >= 0.5]
    got = figures(linked, true_pairs([left, right]), ordered=True)
    assert got.true_pairs == 5_000
    assert got.precision >= 0.995
    assert got.recall >= 0.995
