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


def test_trace_without_a_pds_to_ask_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sharedcare.settings import get_settings

    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.delenv("SHAREDCARE_PDS_URL", raising=False)
    get_settings.cache_clear()
    try:
        got = runner.invoke(app, ["mpi", "trace"])
    finally:
        get_settings.cache_clear()
    assert got.exit_code == 2
    assert "no PDS to ask" in said(got.output)


def test_trace_with_pds_out_of_reach_stops_keeps_everything_and_exits_1(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from sharedcare.access.context import system_caller
    from sharedcare.app import open_services
    from sharedcare.settings import Settings, get_settings

    url = f"sqlite:///{tmp_path / 'store.db'}"
    svc = open_services(Settings(database_url=url))
    with svc.repo.unit(system_caller(), "create") as unit:
        unit.create({"resourceType": "Patient", "name": [{"family": "Thomas", "given": ["Mia"]}],
                     "birthDate": "2019-03-04"})
    svc.committer.close()
    svc.engine.dispose()
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        got = runner.invoke(app, ["mpi", "trace", "--pds", "http://127.0.0.1:9/FHIR/R4"])
    finally:
        get_settings.cache_clear()
    assert got.exit_code == 1, got.output
    result = json.loads(got.stdout)
    assert result["checked"] == {}
    assert "could not be reached" in result["stopped"]
    assert result["index"] == {"unchecked": 1}
    assert "Thomas" not in got.output  # counts only, never record contents


def test_rebuild_indexes_and_links_the_patients_the_index_does_not_hold(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import delete

    from sharedcare.access.context import system_caller
    from sharedcare.app import open_services
    from sharedcare.settings import Settings, get_settings
    from sharedcare.storage import mpi_store
    from sharedcare.storage.tables import mpi_link, mpi_person, mpi_record

    url = f"sqlite:///{tmp_path / 'store.db'}"
    svc = open_services(Settings(database_url=url))
    mia = {"resourceType": "Patient", "name": [{"family": "Thomas", "given": ["Mia"]}], "birthDate": "2019-03-04",
           "gender": "female", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}]}
    with svc.repo.unit(system_caller(), "create") as unit:
        for body in (mia, mia, {**mia, "name": [{"family": "Mensah", "given": ["Kwame"]}], "gender": "male",
                                "identifier": [], "birthDate": "1955-11-30"}):
            unit.create(body)
    with svc.engine.begin() as conn:  # a store restored from a copy without the index
        for table in (mpi_record, mpi_link, mpi_person):
            conn.execute(delete(table))
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        got = runner.invoke(app, ["mpi", "rebuild"])
        again = runner.invoke(app, ["mpi", "rebuild"])
    finally:
        get_settings.cache_clear()
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout) | {"seconds": 0} == {"indexed": 3, "persons": 2, "seconds": 0}
    assert json.loads(again.stdout)["indexed"] == 0
    with svc.engine.connect() as conn:
        assert mpi_store.count_records(conn) == 3
    svc.committer.close()
    svc.engine.dispose()


def test_a_load_with_linking_deferred_links_everything_at_the_end(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from sharedcare.settings import get_settings

    mia = {"resourceType": "Patient", "name": [{"family": "Thomas", "given": ["Mia"]}], "birthDate": "2019-03-04",
           "gender": "female", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}]}
    ndjson = tmp_path / "patients.ndjson"
    ndjson.write_text(json.dumps(mia) + "\n" + json.dumps(mia) + "\n", encoding="utf-8")
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    get_settings.cache_clear()
    try:
        got = runner.invoke(app, ["load", "--defer-linking", str(ndjson)])
        again = runner.invoke(app, ["mpi", "rebuild"])
    finally:
        get_settings.cache_clear()
    assert got.exit_code == 0, got.output
    assert "linked 2 Patients in the patient index" in said(got.output)
    assert json.loads(again.stdout)["indexed"] == 0
    assert json.loads(again.stdout)["persons"] == 1
