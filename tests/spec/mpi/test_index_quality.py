"""How well the index links a synthetic London as its feeds store it (issue 6, goals): every source
record of a population the model was not trained on is written through the store, the index links
each as it arrives, and the persons it made are scored against the truth. The figures are floors: a
change that makes linking worse fails here.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sharedcare import synth
from sharedcare.access.context import system_caller
from sharedcare.app import Services
from sharedcare.mpi.evaluate import pairwise, synth_patients
from sharedcare.storage.tables import mpi_link, mpi_review


@pytest.fixture(scope="module")
def london(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("london")
    synth.generate(1_500, 23, date(2025, 10, 1), out)
    return out / "truth"


@pytest.mark.slow
def test_the_index_links_a_synthetic_london_as_it_arrives(store: Services, london: Path) -> None:
    records = synth_patients(london)
    ids: list[str] = []
    for start in range(0, len(records), 500):
        with store.repo.unit(system_caller(), "create") as unit:
            ids += [unit.create(body).stored.res_id for body, _ in records[start:start + 500]]
    with store.engine.connect() as conn:
        person = dict(conn.execute(select(mpi_link.c.res_id, mpi_link.c.person_id)).all())
        reviewed = conn.execute(select(func.count(func.distinct(mpi_review.c.res_id)))
                                .where(mpi_review.c.status == "open")).scalar_one()
    figures, persons = pairwise((person[i], truth) for i, (_, truth) in zip(ids, records, strict=True))
    assert len(records) > 3_000
    assert figures.precision >= 0.999  # false links are far worse than missed ones
    assert figures.recall >= 0.95
    assert reviewed / len(records) <= 0.02
    assert persons >= len({truth for _, truth in records}) * 0.999  # hardly anyone merged into someone else
