"""Training match weights with Splink (on DuckDB), and Splink's own predictions for comparison.

Needs the `train` extra (`splink`); the online scorer (`model.py`) does not. Training is
unsupervised: the prior from deterministic rules, u from random pairs, m by expectation maximisation
over pairs blocked on one field at a time, so that each comparison is trained on pairs not chosen by
its own field. Nothing here reads the truth of the data it trains on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sharedcare.mpi.comparisons import COMPARISONS
from sharedcare.mpi.model import fill_untrained

LIST_COLUMNS = ("families", "given_names", "given1_group")

# Pairs Splink scores (predictions): any of these agreeing. The online index blocks the same way.
PREDICTION_BLOCKS = (
    "l.nhs_number = r.nhs_number",
    "l.birth_date = r.birth_date",
    "l.family_sound = r.family_sound AND l.given1_sound = r.given1_sound",
    "l.postcode = r.postcode AND substr(l.birth_date, 1, 4) = substr(r.birth_date, 1, 4)",
    "l.family = r.family AND l.given1 = r.given1",
    "l.family = r.family AND substr(l.birth_date, 1, 4) = substr(r.birth_date, 1, 4)",
    "l.given1 = r.given1 AND l.postcode = r.postcode",
)
# Expectation maximisation, a round per blocking rule; each round trains the comparisons its rule
# does not use. (A family name alone is too broad: London's commonest are shared by thousands.)
TRAINING_BLOCKS = ("l.birth_date = r.birth_date", "l.family = r.family AND l.given1 = r.given1",
                   "l.postcode = r.postcode")
PRIOR_RULES = ("l.nhs_number = r.nhs_number AND l.birth_date = r.birth_date",)


def _table(rows: Sequence[dict[str, Any]]) -> Any:
    import pyarrow as pa

    columns = ["unique_id", *sorted({k for c in COMPARISONS for k in c.columns} | {
        "family_sound", "given1_sound", "postcode_sector", "postcode_district", *LIST_COLUMNS})]
    fields = [pa.field(c, pa.list_(pa.string()) if c in LIST_COLUMNS else pa.string()) for c in columns]
    return pa.table({c: [r.get(c) for r in rows] for c in columns}, schema=pa.schema(fields))


def settings(link_type: str) -> dict[str, Any]:
    return {
        "link_type": link_type,
        "unique_id_column_name": "unique_id",
        "comparisons": [c.splink() for c in COMPARISONS],
        "blocking_rules_to_generate_predictions": list(PREDICTION_BLOCKS),
        "retain_intermediate_calculation_columns": False,
    }


def _linker(tables: Sequence[Sequence[dict[str, Any]]], model: dict[str, Any]) -> Any:
    from splink import Linker
    from splink.backends.duckdb import DuckDBAPI

    api = DuckDBAPI()
    frames = [api.register(_table(rows), table_name=f"records_{i}") for i, rows in enumerate(tables)]
    return Linker(frames, model)


def train(tables: Sequence[Sequence[dict[str, Any]]], *, seed: int = 1, recall: float = 0.7,
          max_pairs: float = 2e6) -> dict[str, Any]:
    """A trained model (Splink's JSON form, untrained levels filled) from one table of `features` rows
    to deduplicate, or two to link; each row needs a `unique_id`."""
    link_type = "dedupe_only" if len(tables) == 1 else "link_only"
    linker = _linker(tables, settings(link_type))
    linker.training.estimate_probability_two_random_records_match(list(PRIOR_RULES), recall=recall)
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
    for rule in TRAINING_BLOCKS:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    return fill_untrained(linker.misc.save_model_to_json())


def predict(model: dict[str, Any], tables: Sequence[Sequence[dict[str, Any]]], *,
            threshold: float = 0.0) -> list[dict[str, Any]]:
    """Splink's scores of the blocked pairs (`unique_id_l`, `unique_id_r`, `match_weight`,
    `match_probability`) at or above a match probability."""
    linker = _linker(tables, model)
    found = linker.inference.predict(threshold_match_probability=threshold)
    return [{k: row[k] for k in ("unique_id_l", "unique_id_r", "match_weight", "match_probability")}
            for row in found.as_record_list()]
