"""`sharedcare mpi train` and `sharedcare mpi evaluate`: training match weights on a synthetic London
and scoring them against its truth."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharedcare import synth
from sharedcare.cli import app
from sharedcare.mpi import packaged

runner = CliRunner()


def said(output: str) -> str:
    """The words of a CLI message, without the box and line breaks the terminal put around them."""
    return " ".join(output.replace("│", " ").split())


@pytest.fixture(scope="module")
def london(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("london")
    synth.generate(1_500, 11, date(2026, 4, 1), out)
    return out


@pytest.mark.slow
def test_train_writes_a_model_the_index_can_read_and_evaluate_scores_it(london: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.json"
    trained = runner.invoke(app, ["mpi", "train", "--synth", str(london), "--out", str(model), "--version", "t1"])
    assert trained.exit_code == 0, trained.output
    written = packaged.read(model)
    assert written.version == "t1"
    assert "1500 people, seed 11" in written.trained_on
    assert written.thresholds.link == 0.99

    scored = runner.invoke(app, ["mpi", "evaluate", "--synth", str(london)])
    assert scored.exit_code == 0, scored.output
    figures = json.loads(scored.stdout)[f"synth:{london.name}"]
    assert figures["precision"] >= 0.999
    assert figures["records"] > 1_500


def test_a_folder_without_truth_is_refused_with_its_reason(tmp_path: Path) -> None:
    got = runner.invoke(app, ["mpi", "train", "--synth", str(tmp_path), "--out", str(tmp_path / "m.json")])
    assert got.exit_code == 2
    assert "holds no synthetic London truth" in said(got.output)
    assert not (tmp_path / "m.json").exists()


def test_thresholds_out_of_order_are_refused_before_training(london: Path, tmp_path: Path) -> None:
    got = runner.invoke(app, ["mpi", "train", "--synth", str(london), "--out", str(tmp_path / "m.json"),
                              "--link", "0.4", "--review", "0.6"])
    assert got.exit_code == 2
    assert "thresholds must satisfy 0 < review <= link < 1" in said(got.output)
    assert not (tmp_path / "m.json").exists()


def test_a_model_file_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "model.json"
    broken.write_text('{"version": "x"}')
    with pytest.raises(packaged.ModelError, match="cannot be used"):
        packaged.read(broken)
