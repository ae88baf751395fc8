"""`sharedcare synth` writes the directory of London's organisations and staff (issue 4, first
part): the five ICSs, the 32 boroughs and the City, GP practices in PCNs, trusts and their sites, the
ambulance service, NHS 111, mental health and community providers, councils and care homes, with
practitioners in roles and a CSV of staff accounts. Same arguments, same bytes."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharedcare.cli import app
from sharedcare.fhir.validation import validate
from sharedcare.synth import TYPES, directory, generate
from sharedcare.synth.geography import BOROUGHS, ICSS

AS_OF = date(2026, 4, 1)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for t in TYPES for line in (root / "directory" / f"{t}.ndjson").read_text().splitlines()]


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes(tmp_path: Path) -> None:
    generate(800, 7, AS_OF, tmp_path / "a")
    generate(800, 7, AS_OF, tmp_path / "b")
    generate(800, 8, AS_OF, tmp_path / "c")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a") != _files(tmp_path / "c")


def test_every_directory_resource_passes_the_stores_validation(tmp_path: Path) -> None:
    generate(3000, 1, AS_OF, tmp_path)
    resources = _read(tmp_path)
    assert {r["resourceType"] for r in resources} == set(TYPES)
    for res in resources:
        errors = [i for i in validate(res) if i.severity in ("error", "fatal")]
        assert errors == [], (res["resourceType"], errors)


def test_every_synthetic_resource_is_labelled_as_test_data(tmp_path: Path) -> None:
    """The HL7 security label HTEST ("test health data") marks synthetic data wherever it ends up."""
    generate(500, 1, AS_OF, tmp_path)
    for res in _read(tmp_path):
        assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST",
                "display": "test health data"} in res["meta"]["security"]


def test_the_directory_has_londons_structure(tmp_path: Path) -> None:
    generate(3000, 1, AS_OF, tmp_path)
    resources = _read(tmp_path)
    by_ref = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    orgs = [r for r in resources if r["resourceType"] == "Organization"]

    def kind(org: dict[str, Any]) -> str:
        return str(org["type"][1]["coding"][0]["code"])

    icbs = [o for o in orgs if kind(o) == "ics"]
    assert len(icbs) == len(ICSS) == 5
    councils = [o for o in orgs if kind(o) == "council"]
    assert sorted(o["identifier"][0]["value"] for o in councils) == [f"E09{n:06d}" for n in range(1, 34)]
    assert len(BOROUGHS) == 33
    for practice in (o for o in orgs if kind(o) == "gp-practice"):
        pcn = by_ref[practice["partOf"]["reference"]]
        assert kind(pcn) == "pcn"
        assert kind(by_ref[pcn["partOf"]["reference"]]) == "ics"
    kinds = {kind(o) for o in orgs}
    assert {"acute", "ambulance", "nhs111", "mental-health", "community", "council", "care-home", "gp-practice",
            "pcn", "ics"} <= kinds
    for res in resources:  # every reference names a resource of the directory
        for ref in _references(res):
            assert ref in by_ref, (res["resourceType"], ref)


def test_every_borough_has_practices_in_proportion_to_its_people() -> None:
    small = directory.build(2000, 1)
    assert all(len(small.practices[b.code]) >= 1 for b in BOROUGHS)
    london = directory.build(9_000_000, 1)
    practices = sum(len(codes) for codes in london.practices.values())
    assert 1_100 <= practices <= 1_400  # London has about 1,250 GP practices
    assert len(london.practices["CRY"]) > 10 * len(london.practices["COL"])
    codes = [c for codes in london.practices.values() for c in codes]
    assert len(set(codes)) == len(codes)


def test_staff_accounts_match_their_practitioner_roles(tmp_path: Path) -> None:
    generate(3000, 1, AS_OF, tmp_path)
    roles = {r["id"]: r for r in _read(tmp_path) if r["resourceType"] == "PractitionerRole"}
    with (tmp_path / "directory" / "staff.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(roles)
    assert len({r["username"] for r in rows}) == len(rows)
    for row in rows:
        role = roles[row["role_id"]]
        assert role["practitioner"]["reference"] == f"Practitioner/{row['practitioner_id']}"
        assert role["code"][0]["coding"][0]["code"] == row["job_role"]


def test_the_cli_writes_the_directory_and_refuses_bad_arguments(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["synth", "--out", str(tmp_path / "out"), "--people", "500", "--seed", "3"])
    assert done.exit_code == 0, done.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["people"], manifest["seed"], manifest["as_of"]) == (500, 3, "2026-04-01")
    bad = runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--as-of", "yesterday"])
    assert bad.exit_code == 2
    assert "YYYY-MM-DD" in bad.output
    assert runner.invoke(app, ["synth", "--out", str(tmp_path / "y"), "--people", "0"]).exit_code == 2
    assert not (tmp_path / "x").exists()
    (tmp_path / "a-file").write_text("")
    on_a_file = runner.invoke(app, ["synth", "--out", str(tmp_path / "a-file"), "--people", "5"])
    assert on_a_file.exit_code == 2
    assert "must be a directory" in on_a_file.output
    under_a_file = runner.invoke(app, ["synth", "--out", str(tmp_path / "a-file" / "out"), "--people", "5"])
    assert under_a_file.exit_code == 1
    assert "could not write synthetic London" in under_a_file.output
    assert "Traceback" not in under_a_file.output


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for k, v in node.items() if k != "reference" for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []


@pytest.mark.parametrize("people", [1, 10])
def test_a_tiny_population_still_gets_a_whole_directory(tmp_path: Path, people: int) -> None:
    counts = generate(people, 1, AS_OF, tmp_path)
    assert counts["Organization"] > 33 + 5


def test_the_directory_loads_into_the_store_and_is_searchable(client: Any, tmp_path: Path) -> None:
    """Every resource is accepted by the FHIR API as written (update with its own id), on each backend."""
    generate(1, 1, AS_OF, tmp_path)
    resources = _read(tmp_path)
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}
    done = client.post("/fhir", json=bundle, headers={"Content-Type": "application/fhir+json"})
    assert done.status_code == 200, done.text[:500]
    statuses = [e["response"]["status"] for e in done.json()["entry"]]
    assert all(s.startswith("201") for s in statuses), sorted(set(statuses))
    found = client.get("/fhir/Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|RJ1").json()
    assert [e["resource"]["name"] for e in found["entry"]] == ["Guy's and St Thomas' NHS Foundation Trust"]
    practices = client.get("/fhir/Organization?partof:Organization.identifier=QKK&_count=0").json()
    assert practices["total"] >= 4  # South East London's PCNs
