"""Sensitive data never crosses organisations (issue 5, SC1/SC2): the packaged code sets, the labels
they give when a resource is written, and that nothing so labelled reaches another organisation by
any read path, nor changes any count it sees."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharedcare.access import labels
from sharedcare.app import Services
from sharedcare.cli import app
from sharedcare.settings import Settings, get_settings
from sharedcare.storage.repository import Repository
from sharedcare.storage.tables import relationship
from tests.conftest import BASE_URL
from tests.spec.access.world import build, condition, encounter, source, staff

PACKAGED = json.loads(resources.files("sharedcare.access").joinpath("sensitive_codes.json").read_text())
CODES = [(name, c["system"], c["code"]) for name, body in PACKAGED["sets"].items() for c in body["codes"]]
SETS = labels.load_code_sets()


def verhoeff_ok(number: str) -> bool:
    """SNOMED CT identifiers end in a Verhoeff check digit."""
    d = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
         [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
         [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
         [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
    p = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
         [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
         [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]
    check = 0
    for i, ch in enumerate(reversed(number)):
        check = d[check][p[i % 8][int(ch)]]
    return check == 0


def test_the_packaged_sets_cover_the_four_categories_each_code_with_its_source() -> None:
    assert set(PACKAGED["sets"]) == {"assisted-conception", "sexual-health", "termination-of-pregnancy",
                                     "gender-reassignment"}
    for body in PACKAGED["sets"].values():
        assert body["codes"], "every set has codes"
        assert all(c.get("source") and c.get("display") for c in body["codes"])
    snomed = [code for _, system, code in CODES if system == "http://snomed.info/sct"]
    assert snomed
    assert all(code.isdigit() and verhoeff_ok(code) for code in snomed)


@pytest.mark.parametrize(("name", "system", "code"), CODES, ids=[f"{n}-{c}" for n, _, c in CODES])
def test_every_code_labels_what_carries_it_anywhere(name: str, system: str, code: str) -> None:
    """A coding anywhere in a resource (here a medication request's reason) makes it sensitive."""
    request: dict[str, Any] = {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                               "subject": {"reference": "Patient/p"},
                               "reasonCode": [{"coding": [{"system": system, "code": code}]}]}
    assert f"sensitive:{name}" in (labels.facts(request, SETS).security or "").split()


@pytest.mark.parametrize("sent", ["A54.0", "A540", "a54.0", "B24X"])
def test_icd10_codes_match_with_or_without_the_dot_or_filler(sent: str) -> None:
    for system in ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-uk"):
        assert SETS.sets_of(system, sent) == {"sexual-health"}


def test_a_source_confidential_label_keeps_an_item_within_its_source_but_a_patients_is_address_only() -> None:
    label = {"meta": {"security": [{"system": labels.CONFIDENTIALITY, "code": "V"}]}}
    assert labels.facts({"resourceType": "Observation", **label}, SETS).security == labels.CONFIDENTIAL
    patient = labels.facts({"resourceType": "Patient", "id": "p", **label}, SETS)
    assert patient.security is None
    assert patient.restrictions == (("p", labels.RESTRICTED_ADDRESS),)


def test_no_packaged_code_reaches_another_organisation_by_any_path(store: Services) -> None:
    """SC1 for every code at once: GP1 records one Condition per code for A; a trust clinician caring
    for A (an open encounter) finds none of them by read, search, count, include, history or
    $everything, and every count is what it would be without them."""
    world = build(Repository(store.engine, store.committer, base_url=BASE_URL, code_sets=SETS))
    a = world.ids["Patient:A"]
    world.write(source("TR1"), encounter(a, "trust-one"))
    trust = staff("TR1")
    before = world.search(trust, "Condition", ("patient", a)).total
    hidden = [world.write(source("GP1"), condition(a, (system, code))) for _, system, code in CODES]
    assert world.search(trust, "Condition", ("patient", a)).total == before
    assert world.search(trust, "Condition", ("patient", a), ("_summary", "count")).total == before
    seen = {s.res_id for s in world.search(trust, "Patient", ("_id", a), ("_revinclude", "*")).included}
    seen |= {s.res_id for s in world.repo.everything(trust, a, count=1000).items}
    seen |= {s.res_id for s in world.repo.history(trust, "Condition", None, count=1000).items}
    assert seen.isdisjoint(hidden)
    gp = staff("GP1")
    assert world.search(gp, "Condition", ("patient", a)).total == before + len(hidden)


def test_relabel_applies_changed_code_sets_to_what_is_stored(store: Services, settings: Settings,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Written under sets that did not have a code, an item crosses organisations; once the sets have
    it, `sharedcare db relabel` labels what is stored (and rebuilds relationships), and it stops."""
    world = build(Repository(store.engine, store.committer, base_url=BASE_URL, code_sets=labels.CodeSets({})))
    a = world.ids["Patient:A"]
    world.write(source("TR1"), encounter(a, "trust-one"))
    item = world.write(source("GP1"), condition(a, ("http://snomed.info/sct", "386639001")))
    trust = staff("TR1")
    bp = world.ids["Observation:A-bp"]

    def seen() -> set[str]:
        return {s.res_id for res_type in ("Condition", "Observation")
                for s in world.search(trust, res_type, ("patient", a)).items}
    assert {item, bp} <= seen()
    with store.engine.begin() as conn:  # as a store written before migration 0015 would be
        conn.execute(relationship.delete())
    assert not {item, bp} & seen()
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    try:
        done = CliRunner().invoke(app, ["db", "relabel"])
    finally:
        get_settings.cache_clear()
    assert done.exit_code == 0, done.output
    assert "relabelled" in done.output
    assert bp in seen()  # the relationships are back
    assert item not in seen()  # and termination of pregnancy is now sensitive


def test_relabel_refuses_a_code_sets_file_it_cannot_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "codes.json"
    bad.write_text('{"sets": {"x": {"codes": [{"system": 1}]}}}')
    monkeypatch.setenv("SHAREDCARE_SENSITIVE_CODES_FILE", str(bad))
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    get_settings.cache_clear()
    try:
        done = CliRunner().invoke(app, ["db", "relabel"])
    finally:
        get_settings.cache_clear()
    assert done.exit_code == 2
    assert "cannot be read" in done.output
