"""The online scorer: Fellegi–Sunter match weights from a model trained with Splink.

A pair's match weight is the prior's log-odds plus, for each comparison, log2(m / u) of the level the
pair falls in (`comparisons.py`); a missing value (the null level) adds nothing. The match probability
is 2^w / (1 + 2^w). The weights come from Splink's own model file (`Linker.misc.save_model_to_json`),
read as it is written, so that the index scores a pair exactly as Splink would (checked on FEBRL in
`tests/spec/mpi/test_scoring.py`) without needing Splink, or a database, at run time.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sharedcare.errors import SharedcareError
from sharedcare.mpi.comparisons import COMPARISONS, Comparison, Features


class ModelError(SharedcareError, ValueError):
    """A model file that does not fit the comparisons this code makes."""


@dataclass(frozen=True)
class Score:
    weight: float
    probability: float
    levels: Mapping[str, int]  # per comparison: -1 missing, else the level index (see Comparison.level)


def probability(weight: float) -> float:
    """2^w / (1 + 2^w), without overflow at either end."""
    if weight >= 0:
        return 1.0 / (1.0 + math.exp2(-weight))
    odds = math.exp2(weight)
    return odds / (1.0 + odds)


def fill_untrained(model: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a Splink model in which every level left untrained (never seen in training) counts
    as no evidence: its m and u made equal. Splink would otherwise fall back on defaults of its own
    for them; written out, the model means the same to Splink and to this scorer."""
    filled = copy.deepcopy(dict(model))
    for comparison in filled["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            if m is None and u is None:
                level["m_probability"] = level["u_probability"] = 1e-9
            elif m is None:
                level["m_probability"] = u
            elif u is None:
                level["u_probability"] = m
    return filled


class MatchModel:
    """Scores pairs of `comparisons.features` rows with a trained model's weights."""

    def __init__(self, model: Mapping[str, Any], comparisons: tuple[Comparison, ...] = COMPARISONS) -> None:
        prior = float(model["probability_two_random_records_match"])
        if not 0.0 < prior < 1.0:
            raise ModelError("probability_two_random_records_match must be between 0 and 1")
        self.prior_weight = math.log2(prior / (1.0 - prior))
        by_name = {c["output_column_name"]: c for c in model["comparisons"]}
        if set(by_name) != {c.name for c in comparisons}:
            raise ModelError(f"the model compares {sorted(by_name)}, the code {sorted(c.name for c in comparisons)}")
        self.comparisons = comparisons
        self.weights: dict[str, tuple[float, ...]] = {}
        for comparison in comparisons:
            levels = [lvl for lvl in by_name[comparison.name]["comparison_levels"] if not lvl.get("is_null_level")]
            expected = [lvl.label for lvl in comparison.levels] + ["else"]
            if [lvl.get("label_for_charts") for lvl in levels] != expected:
                raise ModelError(f"the model's levels for {comparison.name} are not the code's")
            self.weights[comparison.name] = tuple(self._weight(comparison.name, lvl) for lvl in levels)

    @staticmethod
    def _weight(name: str, level: Mapping[str, Any]) -> float:
        m, u = level.get("m_probability"), level.get("u_probability")
        if m is None or u is None:
            raise ModelError(f"{name}: a level has no trained m or u (fill_untrained before saving)")
        if m <= 0 or u <= 0:
            raise ModelError(f"{name}: m and u must be above 0")
        return math.log2(float(m) / float(u))

    def score(self, left: Features, right: Features) -> Score:
        weight = self.prior_weight
        levels: dict[str, int] = {}
        for comparison in self.comparisons:
            at = comparison.level(left, right)
            levels[comparison.name] = at
            if at >= 0:
                weight += self.weights[comparison.name][at]
        return Score(weight, probability(weight), levels)
