"""Synthetic London's feeds (issue 4): every source sends in its own native format (GP practices and
the ambulance service FHIR bundles, hospitals HL7 v2 and FHIR documents, mental health HL7 v2, 111
daily CSV batches, councils CSV extracts), each with its own local numbers and the slips real records
carry, and the truth files agree with what the feeds say."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from nhs_number import is_valid

from sharedcare.fhir.validation import validate
from sharedcare.synth import codes, directory, generate
from sharedcare.synth.feeds import Feeds
from sharedcare.synth.fhir_records import MILESTONE
from sharedcare.synth.patients import NHS
from sharedcare.synth.people import people as people_of
from sharedcare.synth.story import CancerPathway, Story
from tests.spec.synth.reading import bundles, gp_patients, hl7_files, pid_ids, resources, rows

AS_OF = date(2026, 4, 1)
N = 2_500


@pytest.fixture(scope="module")
def london(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("london")
    generate(N, 3, AS_OF, root)
    return root


@pytest.fixture(scope="module")
def hl7(london: Path) -> list[tuple[Path, Any]]:
    return hl7_files(london)


@pytest.fixture(scope="module")
def sources(london: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["source"], r["local_id"]): r for r in rows(london / "truth" / "source-records.csv")}


@pytest.fixture(scope="module")
def people(london: Path) -> dict[str, dict[str, str]]:
    return {r["person_id"]: r for r in rows(london / "truth" / "people.csv")}


def _errors(res: dict[str, Any]) -> list[Any]:
    return [i for i in validate(res) if i.severity in ("error", "fatal")]


def test_every_fhir_resource_in_every_feed_passes_the_stores_validation(london: Path) -> None:
    checked = Counter[str]()
    for folder in ("gp", "hospital", "ambulance"):
        for sender, bundle in bundles(london, folder):
            assert _errors(bundle) == [], (sender, bundle["id"])
            for res in resources(bundle):
                assert _errors(res) == [], (sender, res["resourceType"], res["id"])
                checked[res["resourceType"]] += 1
    expected = {"Patient", "Condition", "MedicationRequest", "Observation", "Immunization", "AllergyIntolerance",
                "ServiceRequest", "Flag", "CarePlan", "Encounter", "Composition", "EpisodeOfCare", "Procedure",
                "Schedule", "Slot"}
    assert expected <= set(checked), expected - set(checked)


def test_every_hl7_message_parses_and_every_batch_counts_its_messages(hl7: list[tuple[Path, Any]]) -> None:
    kinds = Counter[str]()
    for path, parsed in hl7:
        assert len(parsed) == 1, path
        batch = parsed[0]
        assert int(str(batch.trailer[1])) == len(batch) > 0, path
        controls = set()
        for message in batch:
            msh = message.segment("MSH")
            assert str(msh[4]) == path.stem
            assert str(msh[12]) == "2.4"
            controls.add(str(msh[10]))
            kinds[str(msh[9][0][0]) + "^" + str(msh[9][0][1])] += 1
            assert str(message.segment("PID")[3])  # every message names its patient
        assert len(controls) == len(batch), f"duplicate control ids in {path}"
    for kind in ("ADT^A01", "ADT^A02", "ADT^A03", "ADT^A04", "ADT^A08", "ADT^A31", "ADT^A40", "ORU^R01",
                 "SIU^S12", "SIU^S14", "SIU^S15", "SIU^S26"):
        assert kinds[kind] > 0, kind


def test_every_record_a_source_sends_is_in_the_truth_with_the_identifiers_it_carries(
        london: Path, hl7: list[tuple[Path, Any]], sources: dict[tuple[str, str], dict[str, str]]) -> None:
    """Each hospital number, ambulance patient, 111 case and social care case maps to one person, with
    the NHS number exactly as the source sent it (or none)."""
    for path, parsed in hl7:
        for message in parsed[0]:
            ids = pid_ids(message)
            row = sources[(path.stem, ids["MR"])]
            assert ids.get("NH", "") == row["nhs_number"]
            if str(message.segment("MSH")[9][0][1]) == "A40":
                old = sources[(path.stem, str(message.segment("MRG")[1][0][0]))]
                assert old["merged_into"] == ids["MR"]
                assert old["person_id"] == row["person_id"]
    for sender, bundle in bundles(london, "ambulance"):
        patient = resources(bundle, "Patient")[0]
        local = next(i["value"] for i in patient["identifier"] if i["system"] != NHS)
        nhs = next((i["value"] for i in patient["identifier"] if i["system"] == NHS), "")
        assert sources[(sender, local)]["nhs_number"] == nhs
    for path in (london / "feeds" / "111").glob("*.csv"):
        assert path.stem <= AS_OF.isoformat()
        for call in rows(path):
            assert call["call_time"].startswith(path.stem)
            assert sources[("Y111L", call["case_ref"])]["nhs_number"] == call["nhs_number"]
    for path in (london / "feeds" / "social-care").glob("*.csv"):
        for case in rows(path):
            assert sources[(path.stem, case["case_id"])]["nhs_number"] == case["nhs_number"]


def test_nhs_numbers_are_missing_or_mistyped_in_a_realistic_share_and_only_unchecked_systems_keep_invalid_ones(
        sources: dict[tuple[str, str], dict[str, str]], people: dict[str, dict[str, str]]) -> None:
    by_kind: dict[str, Counter[str]] = {}
    for row in sources.values():
        by_kind.setdefault(row["kind"], Counter())[row["nhs_status"]] += 1
        truth = people[row["person_id"]]["nhs_number"]
        if row["nhs_status"] == "correct":
            assert row["nhs_number"] == truth
        elif row["nhs_status"] == "mistyped":
            assert row["nhs_number"] != truth
            assert len(row["nhs_number"]) == 10
            assert is_valid(row["nhs_number"]) or row["kind"] == "social-care"
        else:
            assert row["nhs_number"] == ""

    def missing(kind: str) -> float:
        return by_kind[kind]["missing"] / sum(by_kind[kind].values())
    assert by_kind["gp"]["correct"] == N
    assert len(by_kind["gp"]) == 1
    assert 0.15 < missing("ambulance") < 0.35
    assert 0.1 < missing("nhs111") < 0.3
    assert 0.005 < missing("hospital") < 0.1  # unknown emergency patients included
    assert sum(c["mistyped"] for c in by_kind.values()) > 0


def test_names_carry_typos_nicknames_hyphens_swaps_and_stale_addresses(
        sources: dict[tuple[str, str], dict[str, str]], people: dict[str, dict[str, str]]) -> None:
    seen = Counter[str]()
    for row in sources.values():
        person = people[row["person_id"]]
        for variation in filter(None, row["variations"].split(";")):
            seen[variation] += 1
        slips = set(row["variations"].split(";"))
        if not slips & {"nickname", "typo", "hyphenated", "swapped-names", "unknown-patient"}:
            assert (row["given"], row["family"]) == (person["given"], person["family"])
        if "swapped-names" in slips and not slips & {"nickname", "typo", "hyphenated"}:
            assert (row["given"], row["family"]) == (person["family"], person["given"])
        if "old-address" in slips:
            assert row["postcode"] == person["previous_postcode"] != person["postcode"]
        if "dob-swap" in slips:
            assert row["birth_date"] != person["birth_date"]
    for variation in ("nickname", "typo", "hyphenated", "swapped-names", "old-address", "unknown-patient"):
        assert seen[variation] > 0, variation


def test_nothing_happens_to_anyone_after_they_die(
        hl7: list[tuple[Path, Any]], sources: dict[tuple[str, str], dict[str, str]],
        people: dict[str, dict[str, str]]) -> None:
    died = 0
    for path, parsed in hl7:
        for message in parsed[0]:
            mr = pid_ids(message)["MR"]
            died_on = people[sources[(path.stem, mr)]["person_id"]]["died_on"]
            if died_on:
                died += 1
                sent = str(message.segment("MSH")[7])[:8]
                assert sent <= died_on.replace("-", "") or str(message.segment("MSH")[9][0][1]) == "A40"
    assert died > 0


def test_the_pathfinder_truth_agrees_with_what_the_gp_records_say(london: Path) -> None:
    year_ago = (AS_OF - timedelta(days=365)).isoformat()
    saba = {m.dmd for m in codes.MEDICINES.values() if m.group == "saba"}
    htn = codes.CONDITIONS["essential_hypertension"].snomed.code
    by_nhs: dict[str, dict[str, Any]] = {}
    for _, bundle in bundles(london, "gp"):
        patient = resources(bundle, "Patient")[0]
        requests = resources(bundle, "MedicationRequest")
        by_nhs[patient["identifier"][0]["value"]] = {
            "saba": sum(r["intent"] == "order" and r["authoredOn"] > year_ago
                        and r["medicationCodeableConcept"]["coding"][0]["code"] in saba for r in requests),
            "htn": any(c["code"]["coding"][0]["code"] == htn and c["clinicalStatus"]["coding"][0]["code"] == "active"
                       for c in resources(bundle, "Condition")),
            "given": sum(i["status"] == "completed" for i in resources(bundle, "Immunization")),
            "referrals": len(resources(bundle, "ServiceRequest")),
        }
    nhs_of = {r["person_id"]: r["nhs_number"] for r in rows(london / "truth" / "people.csv")}
    asthma = rows(london / "truth" / "asthma.csv")
    assert sum(int(r["on_register"]) for r in asthma) > 0
    for row in asthma:
        assert by_nhs[nhs_of[row["person_id"]]]["saba"] == int(row["saba_issues_12m"])
    for row in rows(london / "truth" / "hypertension.csv"):
        assert by_nhs[nhs_of[row["person_id"]]]["htn"] == bool(int(row["diagnosed"]))
    given = Counter(r["person_id"] for r in rows(london / "truth" / "immunisations.csv") if r["status"] == "given")
    for person_id, n in given.items():
        assert by_nhs[nhs_of[person_id]]["given"] == n
    referrals = Counter(r["person_id"] for r in rows(london / "truth" / "cancer.csv"))
    for person_id, n in referrals.items():
        assert by_nhs[nhs_of[person_id]]["referrals"] == n


def test_each_cancer_pathway_is_recorded_by_the_trusts_it_passed_through(london: Path) -> None:
    episodes: dict[tuple[str, str], dict[str, Any]] = {}
    for trust, bundle in bundles(london, "hospital"):
        for episode in resources(bundle, "EpisodeOfCare"):
            episodes[(trust, episode["identifier"][0]["value"])] = bundle
    pathways = rows(london / "truth" / "cancer.csv")
    assert pathways
    for p in pathways:
        first = episodes[(p["first_provider"], p["pathway_id"])]
        told = [o for o in resources(first, "Observation") if o["code"]["coding"][0]["system"] == MILESTONE
                and o["code"]["coding"][0]["code"].startswith("fds-end")]
        assert [o["effectiveDateTime"] for o in told] == ([p["told"]] if p["told"] else [])
        if p["transfer_received"]:
            treating = episodes[(p["treating_provider"], p["pathway_id"])]
            treated = [x["performedDateTime"] for x in resources(treating, "Procedure")]
            assert treated == ([p["treated"]] if p["treated"] else [])


def test_some_gp_patients_moved_and_keep_their_old_address(london: Path) -> None:
    with_old = [p for p in gp_patients(london) if len(p["address"]) == 2]
    assert with_old
    for patient in with_old:
        home, old = patient["address"]
        assert (home["use"], old["use"]) == ("home", "old")
        assert home["period"]["start"] == old["period"]["end"]


def test_the_111_batches_and_council_extracts_are_plain_csv_with_a_header(london: Path) -> None:
    days = sorted((london / "feeds" / "111").glob("*.csv"))
    assert len(days) > 100
    councils = sorted((london / "feeds" / "social-care").glob("*.csv"))
    assert all(p.stem.startswith("E09") for p in councils)
    with days[0].open(encoding="utf-8", newline="") as f:
        assert next(csv.reader(f))[:3] == ["call_id", "call_time", "case_ref"]


def test_a_transferred_cancer_pathway_is_recorded_by_both_trusts(tmp_path: Path) -> None:
    """An inter-provider transfer: the referring trust records first seen, diagnosis, FDS end and the
    transfer it sent; the treating trust its own episode (the same pathway identifier), the transfer
    it received, the decision to treat and the first treatment."""
    found = directory.build(100, 1)
    person = next(iter(people_of(100, 1, AS_OF, found)))
    pathway = CancerPathway("PPI0000000001", "lung", date(2025, 11, 3), date(2025, 11, 4), "RJ6", date(2025, 11, 12),
                            date(2025, 11, 18), date(2025, 11, 28), "lung_cancer", date(2025, 11, 25),
                            date(2025, 11, 27), "RJ7", date(2025, 12, 8), date(2026, 1, 5))
    feeds = Feeds(tmp_path, found, AS_OF, 1, 100)
    feeds.write(person, Story(pathways=[pathway]))
    feeds.close()
    recorded = {trust: bundle for trust, bundle in bundles(tmp_path, "hospital") if resources(bundle, "EpisodeOfCare")}
    assert set(recorded) == {"RJ6", "RJ7"}
    for bundle in recorded.values():
        assert resources(bundle, "EpisodeOfCare")[0]["identifier"][0]["value"] == "PPI0000000001"
    sent = resources(recorded["RJ6"], "ServiceRequest")[0]
    assert sent["authoredOn"] == "2025-11-25"
    assert sent["performer"][0]["reference"] == f"Organization/{found.org_ids['RJ7']}"
    assert [p["performedDateTime"] for p in resources(recorded["RJ7"], "Procedure")] == ["2026-01-05"]
    milestones = {o["code"]["coding"][0]["code"]: o["effectiveDateTime"]
                  for o in resources(recorded["RJ7"], "Observation")}
    assert milestones == {"transfer-received": "2025-11-27", "decision-to-treat": "2025-12-08"}
    told = {o["code"]["coding"][0]["code"] for o in resources(recorded["RJ6"], "Observation")}
    assert told == {"fds-end-diagnosed"}
