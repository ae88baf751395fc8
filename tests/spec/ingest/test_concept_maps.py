"""Local codes translated through ConceptMaps kept per source (ingest/concept_maps.py; hazard H-060).

A source lists its local code systems; ConceptMaps that belong to it translate them. Only an
`equivalent` or `equal` target is added as a coding, after the original, which is never changed; any
other is a warning. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from sharedcare.access.context import system_caller
from sharedcare.app import Services
from sharedcare.fhir import interactions
from sharedcare.fhir.search import query as search_query
from sharedcare.ingest import concept_maps, csv_feed, fhir_feed, sources
from sharedcare.ingest.hl7v2 import mapping
from sharedcare.ingest.hl7v2.mapping import Mapped
from sharedcare.ingest.hl7v2.message import parse
from sharedcare.settings import Settings, get_settings
from sharedcare.storage import inbox_store
from sharedcare.storage.inbox_store import Source
from tests.spec.ingest.csv_golden import GOLDEN as CSV_GOLDEN
from tests.spec.ingest.feeds import LOOPBACK, inbox, register, stored

LAB_CODES = "https://sharedcare.example/CodeSystem/hl7v2/RJ7/99ZZZ"  # the trust's `99ZZZ` codes, as mapped
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
GLUCOSE = "14749-6"  # Glucose [Moles/volume] in Serum or Plasma
SOCIAL_CARE = "https://sharedcare.example/CodeSystem/social-care-service"
GP_CODES = "https://example.org/gp/codes"


def oru(control: str, code: str = "GLU^Glucose^99ZZZ") -> bytes:
    return "\r".join([
        f"MSH|^~\\&|WINPATH|RJ7|SHAREDCARE|LONDON|20250728143000||ORU^R01^ORU_R01|{control}|P|2.4|||||GBR|"
        "UNICODE UTF-8",
        "PID|1||RJ70000002^^^RJ7^MR~9625315403^^^NHS^NH||Ibrahim^Hassan^^^Mr^^L||19660111|M",
        f"OBR|1|P{control}|F{control}|{code}|||20250728091500|||||||||||||||20250728142900||CH|F",
        f"OBX|1|NM|{code}||5.4|mmol/L^^UCUM|3.0-6.0|N|||F|||20250728091500"]).encode() + b"\r"


def concept_map(url: str, source: str, target: str, *elements: tuple[str, str, str], version: str = "1",
                status: str = "active") -> dict[str, Any]:
    """A ConceptMap with one group: (local code, target code, equivalence) per element."""
    def target_of(code: str, equivalence: str) -> dict[str, Any]:
        out: dict[str, Any] = {"code": code, "equivalence": equivalence}
        if equivalence in ("narrower", "inexact"):
            out["comment"] = "the local test is more specific than the target"  # R4 cmd-1
        return out
    return {"resourceType": "ConceptMap", "url": url, "version": version, "status": status,
            "group": [{"source": source, "target": target, "element": [
                {"code": code, "target": [target_of(to, equivalence)]} for code, to, equivalence in elements]}]}


def lab(store: Services, **extra: Any) -> Source:
    return register(store, code_systems=("99ZZZ",), **extra)


def found(store: Services, res_type: str, *criteria: tuple[str, str]) -> list[dict[str, Any]]:
    q = search_query.parse(res_type, list(criteria), default_count=50, max_count=50)
    return [orjson.loads(s.data) for s in store.repo.search(system_caller(), q, "").items if s.data]


def observation_codings(store: Services) -> list[dict[str, Any]]:
    [obs] = found(store, "Observation")
    codings: list[dict[str, Any]] = obs["code"]["coding"]
    return codings


def process(store: Services, settings: Settings, *messages: bytes) -> list[inbox_store.Message]:
    box = inbox(store, settings)
    for payload in messages:
        box.receive_hl7(payload, LOOPBACK)
    box.drain()
    return stored(store)


def warnings_of(m: inbox_store.Message) -> list[str]:
    warnings: list[str] = json.loads(m.outcome or "{}")["warnings"]
    return warnings


def test_a_result_with_a_local_test_code_gets_the_equivalent_loinc_coding_after_the_original(
        store: Services, settings: Settings) -> None:
    source = lab(store)
    concept_maps.add(store.repo, source, concept_map("https://rj7.example/cm/lab", LAB_CODES, LOINC,
                                                     ("GLU", GLUCOSE, "equivalent")))
    [m] = process(store, settings, oru("L1"))
    assert m.status == "done"
    original, added = observation_codings(store)
    assert original == {"system": LAB_CODES, "code": "GLU", "display": "Glucose"}
    assert (added["system"], added["code"]) == (LOINC, GLUCOSE)
    assert added["extension"] == [{"url": concept_maps.TRANSLATED_BY, "valueCanonical": "https://rj7.example/cm/lab|1"}]
    [report] = found(store, "DiagnosticReport")
    assert [(c["system"], c["code"]) for c in report["code"]["coding"]] == [(LAB_CODES, "GLU"), (LOINC, GLUCOSE)]


def test_the_original_coding_is_kept_byte_for_byte(store: Services, settings: Settings) -> None:
    source = lab(store)
    untranslated = mapping.map_message(parse(oru("L1").decode()), mapping.Context("RJ7", "RJ7", "Trust RJ7"))
    [obs_entry] = [e for e in untranslated.bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    as_mapped = orjson.dumps(obs_entry["resource"]["code"]["coding"][0])
    concept_maps.add(store.repo, source, concept_map("https://rj7.example/cm/lab", LAB_CODES, LOINC,
                                                     ("GLU", GLUCOSE, "equal")))
    process(store, settings, oru("L1"))
    [obs] = store.repo.search(system_caller(), search_query.parse("Observation", [], default_count=5, max_count=5),
                              "").items
    assert obs.data is not None
    assert b'"coding":[' + as_mapped + b',{"extension"' in obs.data  # first, exactly as mapped, then the translation


def test_the_translated_observation_is_found_by_the_standard_code(store: Services, settings: Settings) -> None:
    source = lab(store)
    concept_maps.add(store.repo, source, concept_map("https://rj7.example/cm/lab", LAB_CODES, LOINC,
                                                     ("GLU", GLUCOSE, "equivalent")))
    process(store, settings, oru("L1"))
    assert len(found(store, "Observation", ("code", f"{LOINC}|{GLUCOSE}"))) == 1
    assert len(found(store, "Observation", ("code", f"{LAB_CODES}|GLU"))) == 1  # and still by the local one


def test_a_narrower_translation_is_only_a_warning(store: Services, settings: Settings) -> None:
    source = lab(store)
    concept_maps.add(store.repo, source, concept_map("https://rj7.example/cm/lab", LAB_CODES, LOINC,
                                                     ("GLU", "2339-0", "narrower")))
    [m] = process(store, settings, oru("L1"))
    assert [c["system"] for c in observation_codings(store)] == [LAB_CODES]
    [warning] = [w for w in warnings_of(m) if "narrower" in w]
    assert LAB_CODES in warning
    assert "GLU" not in warning  # warnings name systems and maps, never a code


def test_without_a_map_local_codes_are_left_as_they_are(store: Services, settings: Settings) -> None:
    lab(store)
    [m] = process(store, settings, oru("L1"))
    assert observation_codings(store) == [{"system": LAB_CODES, "code": "GLU", "display": "Glucose"}]
    assert not any("translation" in w for w in warnings_of(m))


def test_a_local_code_no_map_mentions_is_left_with_a_warning_naming_only_its_system(
        store: Services, settings: Settings) -> None:
    source = lab(store)
    concept_maps.add(store.repo, source, concept_map("https://rj7.example/cm/lab", LAB_CODES, LOINC,
                                                     ("NA", "2951-2", "equivalent")))
    [m] = process(store, settings, oru("L1"))
    assert [c["system"] for c in observation_codings(store)] == [LAB_CODES]
    assert f"no translation for a local code in system {LAB_CODES}" in warnings_of(m)


def test_a_changed_concept_map_applies_to_the_next_message(store: Services, settings: Settings) -> None:
    source = lab(store)
    url = "https://rj7.example/cm/lab"
    concept_maps.add(store.repo, source, concept_map(url, LAB_CODES, LOINC, ("GLU", "15074-8", "equivalent")))
    process(store, settings, oru("L1"))
    second = concept_maps.add(store.repo, source, concept_map(url, LAB_CODES, LOINC, ("GLU", GLUCOSE, "equivalent"),
                                                              version="2"))
    assert not second.created  # the same url: a new version of the source's map
    process(store, settings, oru("L2"))
    by_filler = {o["identifier"][0]["value"]: [c["code"] for c in o["code"]["coding"]]
                 for o in found(store, "DiagnosticReport")}
    assert by_filler == {"FL1": ["GLU", "15074-8"], "FL2": ["GLU", GLUCOSE]}
    concept_maps.add(store.repo, source, concept_map(url, LAB_CODES, LOINC, ("GLU", GLUCOSE, "equivalent"),
                                                     version="3", status="retired"))
    process(store, settings, oru("L3"))
    assert [c["code"] for r in found(store, "DiagnosticReport") if r["identifier"][0]["value"] == "FL3"
            for c in r["code"]["coding"]] == ["GLU"]


def test_a_deleted_concept_map_no_longer_applies(store: Services, settings: Settings) -> None:
    source = lab(store)
    added = concept_maps.add(store.repo, source, concept_map("https://rj7.example/cm/lab", LAB_CODES, LOINC,
                                                             ("GLU", GLUCOSE, "equivalent")))
    assert concept_maps.for_source(store.repo, source).systems == {LAB_CODES}
    with store.repo.unit(system_caller(), "delete", "ConceptMap") as unit:
        interactions.delete(unit, "ConceptMap", added.stored.res_id)
    assert concept_maps.for_source(store.repo, source).systems == frozenset()


def test_a_changed_concept_map_applies_to_a_replayed_dead_letter(store: Services, settings: Settings) -> None:
    council = sources.register(store.engine, Source("E09000002", "E09000002", "Barking and Dagenham", ("csv",),
                                                    code_systems=(SOCIAL_CARE,)))  # no column mapping yet
    url = "https://lbbd.example/cm/services"
    concept_maps.add(store.repo, council, concept_map(url, SOCIAL_CARE, SNOMED,
                                                      ("home-care", "385763009", "equivalent")))
    assert concept_maps.for_source(store.repo, council).targets[(SOCIAL_CARE, "home-care")][0].code == "385763009"
    box = inbox(store, settings)
    data = (CSV_GOLDEN / "social-care-home-care" / "input.csv").read_bytes()
    box.receive_items(csv_feed.split(council, data, "E09000002.csv").items)
    box.drain()
    assert {m.status for m in stored(store)} == {"dead"}
    concept_maps.add(store.repo, council, concept_map(url, SOCIAL_CARE, SNOMED,
                                                      ("home-care", "60689008", "equivalent"), version="2"))
    inbox_store.change_source(store.engine, council.source_id, csv_mapping="social-care")
    assert inbox_store.replay(store.engine, source_id=council.source_id) == 2
    box.drain()
    assert {m.status for m in stored(store)} == {"done"}
    episodes = found(store, "EpisodeOfCare", ("type", f"{SNOMED}|60689008"))
    assert len(episodes) == 2
    assert found(store, "EpisodeOfCare", ("type", f"{SNOMED}|385763009")) == []
    assert all(ep["type"][0]["coding"][0]["system"] == SOCIAL_CARE for ep in episodes)


def test_another_sources_concept_map_never_applies(store: Services, settings: Settings) -> None:
    lab(store)
    other = register(store, "RAL", "RAL", code_systems=(LAB_CODES,))
    concept_maps.add(store.repo, other, concept_map("https://ral.example/cm/lab", LAB_CODES, LOINC,
                                                    ("GLU", GLUCOSE, "equivalent")))
    # Nor one that names the trust's source but was written by another organisation's system.
    forged = concept_map("https://ral.example/cm/forged", LAB_CODES, LOINC, ("GLU", "15074-8", "equivalent"))
    forged["useContext"] = [concept_maps.use_context("RJ7")]
    with store.repo.unit(system_caller(organisation="RAL"), "create", "ConceptMap") as unit:
        interactions.create(unit, "ConceptMap", forged)
    process(store, settings, oru("L1"))
    assert [c["system"] for c in observation_codings(store)] == [LAB_CODES]


def test_fhir_feed_codes_are_translated_too(store: Services, settings: Settings) -> None:
    gp = sources.register(store.engine, Source("E85001", "E85001", "Practice", ("fhir",), code_systems=(GP_CODES,)))
    concept_maps.add(store.repo, gp, concept_map("https://e85001.example/cm", GP_CODES, LOINC,
                                                 ("SYS", "8480-6", "equivalent")))
    patient_url = "urn:uuid:0b6f8a4e-2c1d-4a3b-9f0e-1a2b3c4d5e6f"
    obs_url = "urn:uuid:1c7f9b5f-3d2e-4b4c-8a1f-2b3c4d5e6f70"
    bundle = {"resourceType": "Bundle", "id": "gp-1", "type": "transaction", "entry": [
        {"fullUrl": patient_url, "request": {"method": "PUT", "url": "Patient?identifier=https://example.org/gp|G1"},
         "resource": {"resourceType": "Patient", "identifier": [{"system": "https://example.org/gp", "value": "G1"}]}},
        {"fullUrl": obs_url, "request": {"method": "PUT", "url": "Observation?identifier=https://example.org/gp/obs|O1"},
         "resource": {"resourceType": "Observation", "status": "final",
                      "identifier": [{"system": "https://example.org/gp/obs", "value": "O1"}],
                      "code": {"coding": [{"system": GP_CODES, "code": "SYS", "display": "Systolic"}]},
                      "subject": {"reference": patient_url}, "valueQuantity": {
                          "value": 128, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}}]}
    box = inbox(store, settings)
    box.receive_items(fhir_feed.split("E85001", json.dumps(bundle).encode(), "gp.json").items)
    box.drain()
    assert [(c["system"], c["code"]) for c in observation_codings(store)] == [(GP_CODES, "SYS"), (LOINC, "8480-6")]


def test_csv_feed_codes_are_translated_too(store: Services, settings: Settings) -> None:
    council = sources.register(store.engine, Source("E09000002", "E09000002", "Barking and Dagenham", ("csv",),
                                                    code_systems=(SOCIAL_CARE,), csv_mapping="social-care"))
    concept_maps.add(store.repo, council, concept_map("https://lbbd.example/cm/services", SOCIAL_CARE, SNOMED,
                                                      ("home-care", "60689008", "equivalent")))
    box = inbox(store, settings)
    box.receive_items(csv_feed.split(council, (CSV_GOLDEN / "social-care-home-care" / "input.csv").read_bytes(),
                                     "E09000002.csv").items)
    box.drain()
    assert len(found(store, "EpisodeOfCare", ("type", f"{SNOMED}|60689008"))) == 2
    [plan, *_] = found(store, "CarePlan")
    assert [c["code"] for c in plan["activity"][0]["detail"]["code"]["coding"]] == ["home-care", "60689008"]


def test_two_translations_to_different_codes_in_one_system_add_neither() -> None:
    maps = concept_maps.compile_maps([
        concept_map("https://a.example/1", LAB_CODES, LOINC, ("GLU", GLUCOSE, "equivalent")),
        concept_map("https://a.example/2", LAB_CODES, LOINC, ("GLU", "15074-8", "equivalent"))],
        frozenset({LAB_CODES}))
    mapped = concept_maps.translate(Mapped({"entry": [{"resource": {"code": {"coding": [
        {"system": LAB_CODES, "code": "GLU"}]}}}]}), maps)
    assert mapped.bundle["entry"][0]["resource"]["code"]["coding"] == [{"system": LAB_CODES, "code": "GLU"}]
    assert any("different codes" in w for w in mapped.warnings)


def test_a_coding_already_there_is_never_added_again_and_codes_at_any_depth_are_translated() -> None:
    maps = concept_maps.compile_maps([concept_map("https://a.example/1", LAB_CODES, LOINC,
                                                  ("GLU", GLUCOSE, "equivalent"))], frozenset({LAB_CODES}))
    both = [{"system": LAB_CODES, "code": "GLU"}, {"system": LOINC, "code": GLUCOSE}]
    deep = {"component": [{"code": {"coding": [{"system": LAB_CODES, "code": "GLU"}]}}]}
    mapped = concept_maps.translate(Mapped({"entry": [{"resource": {"code": {"coding": list(both)}, **deep}}]}), maps)
    resource = mapped.bundle["entry"][0]["resource"]
    assert resource["code"]["coding"] == both
    assert [c["code"] for c in resource["component"][0]["code"]["coding"]] == ["GLU", GLUCOSE]


@pytest.fixture
def cli_env(store: Services, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SHAREDCARE_GC_FREEZE", "false")
    get_settings.cache_clear()


def test_the_commands_keep_a_sources_map_and_list_it(store: Services, cli_env: None, tmp_path: Path) -> None:
    from sharedcare.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["sources", "add", "RJ7", "--ods", "RJ7", "--name", "Trust",
                               "--code-system", "99ZZZ"]).exit_code == 0
    doc = concept_map("https://rj7.example/cm/lab", LAB_CODES, LOINC, ("GLU", GLUCOSE, "equivalent"))
    doc["group"].append({"source": "https://sharedcare.example/CodeSystem/hl7v2/RJ7/L", "target": SNOMED,
                         "element": [{"code": "X", "target": [{"code": "1", "equivalence": "wider"}]}]})
    (tmp_path / "map.json").write_text(json.dumps(doc))
    added = runner.invoke(app, ["sources", "conceptmap", "add", "RJ7", str(tmp_path / "map.json")])
    assert added.exit_code == 0, added.output
    source = inbox_store.get_source(store.engine, "RJ7")
    assert source is not None
    assert source.code_systems == ("99ZZZ", "https://sharedcare.example/CodeSystem/hl7v2/RJ7/L")
    listed = runner.invoke(app, ["sources", "conceptmap", "list", "RJ7", "--json"])
    assert listed.exit_code == 0
    [row] = json.loads(listed.stdout)
    assert (row["url"], row["status"], row["applied"], row["written_by"]) == (
        "https://rj7.example/cm/lab", "active", True, None)
    stored_map = found(store, "ConceptMap")[0]
    assert concept_maps.named_sources(stored_map) == {"RJ7"}


def test_the_command_refuses_what_is_not_a_valid_r4_concept_map(store: Services, cli_env: None,
                                                                  tmp_path: Path) -> None:
    from sharedcare.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["sources", "add", "RJ7", "--ods", "RJ7", "--name", "Trust"]).exit_code == 0
    cases = {"observation.json": {"resourceType": "Observation"},
             "bad.json": {**concept_map("https://x.example/cm", LAB_CODES, LOINC, ("GLU", GLUCOSE, "sameish"))},
             "no-url.json": {k: v for k, v in concept_map("https://x.example/cm", LAB_CODES, LOINC,
                                                          ("GLU", GLUCOSE, "equal")).items() if k != "url"},
             "other.json": {**concept_map("https://x.example/cm", LAB_CODES, LOINC, ("GLU", GLUCOSE, "equal")),
                            "useContext": [concept_maps.use_context("RAL")]}}
    for name, doc in cases.items():
        (tmp_path / name).write_text(json.dumps(doc))
        result = runner.invoke(app, ["sources", "conceptmap", "add", "RJ7", str(tmp_path / name)])
        assert result.exit_code == 2, name
    assert found(store, "ConceptMap") == []
    assert runner.invoke(app, ["sources", "conceptmap", "list", "NOPE"]).exit_code == 1
