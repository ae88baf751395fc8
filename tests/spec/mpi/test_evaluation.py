"""How well the index links, against data whose truth is known (issue 6, item 8): figures asserted as
floors, so that a change which makes linking worse fails. The goals and the latest figures are in
docs/benchmarks.md; these floors sit at or below what is measured there, for the smaller data here.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from sharedcare import synth
from sharedcare.mpi import packaged
from sharedcare.mpi.evaluate import evaluate, febrl_records, synth_records
from sharedcare.mpi.model import MatchModel
from tests.support.conformance import conformance_path

pytestmark = pytest.mark.slow


def test_the_shipped_model_on_a_synthetic_london_it_was_not_trained_on(tmp_path: Path) -> None:
    """Automatic links almost never wrong (precision at least 0.999), nearly all made (recall at
    least 0.95), few records sent to a person (at most 3.5% in any pair for review), and the
    person's other records among the best three `Patient/$match` candidates (at least 0.99)."""
    synth.generate(5_000, 7, date(2025, 10, 1), tmp_path)
    shipped = packaged.load()
    got = evaluate(shipped.model, shipped.splink, [synth_records(tmp_path / "truth")], shipped.thresholds)
    assert got.links.true_pairs > 5_000
    assert got.links.precision >= 0.999
    assert got.links.recall >= 0.95
    assert got.review_share <= 0.035
    assert got.top3 >= 0.99
    # The sweep of link thresholds agrees with the decisions at the shipped one, and a stricter
    # threshold never links more.
    assert dict(got.sweep)[shipped.thresholds.link] == got.links
    linked = [figures.linked for _, figures in got.sweep]
    assert linked == sorted(linked, reverse=True)


@pytest.mark.parametrize(("files", "recall"), [(("dataset4a.csv", "dataset4b.csv"), 0.97), (("dataset3.csv",), 0.93)],
                         ids=["febrl4-link", "febrl3-dedupe"])
def test_febrl_trained_without_labels_links_almost_only_true_pairs(files: tuple[str, ...], recall: float) -> None:
    from sharedcare.mpi.train import train

    tables = [febrl_records(conformance_path("febrl", name)) for name in files]
    model = train(tables)
    got = evaluate(MatchModel(model), model, tables, packaged.load().thresholds)
    assert got.links.precision >= 0.999
    assert got.links.recall >= recall
    assert got.top3 >= 0.99
