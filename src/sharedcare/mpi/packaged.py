"""The match model shipped with sharedcare (`mpi/data/model.json`), and writing a new one.

The file holds Splink's trained model as Splink writes it, under `splink`, beside what the index
needs to use it: a version, what it was trained on, and the thresholds. `sharedcare mpi train`
writes it; the index and `Patient/$match` read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sharedcare.mpi.decide import Thresholds
from sharedcare.mpi.model import MatchModel, ModelError

MODEL_FILE = Path(__file__).parent / "data" / "model.json"


@dataclass(frozen=True)
class Packaged:
    version: str
    trained_on: str
    thresholds: Thresholds
    splink: dict[str, Any]
    model: MatchModel


def read(path: Path) -> Packaged:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        thresholds = Thresholds(**doc["thresholds"])
        return Packaged(str(doc["version"]), str(doc["trained_on"]), thresholds, doc["splink"],
                        MatchModel(doc["splink"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"the match model file {path.name} cannot be used: {exc}") from exc


@cache
def load() -> Packaged:
    """The shipped model (read once)."""
    return read(MODEL_FILE)


def write(path: Path, splink_model: dict[str, Any], *, version: str, trained_on: str,
          thresholds: Thresholds) -> Packaged:
    MatchModel(splink_model)  # refuse to write a model the scorer cannot use
    doc = {"version": version, "trained_on": trained_on,
           "thresholds": {"link": thresholds.link, "review": thresholds.review}, "splink": splink_model}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return read(path)
