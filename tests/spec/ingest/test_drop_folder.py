"""The watched drop folder: `<dir>/<source-id>/` is one registered source's folder. A complete file in
it goes into the inbox as that source sent it (never as another), is moved to done/ after the inbox
commit, or to failed/ beside the reasons for what was refused; nothing is taken half-written, lost or
stored twice. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from sharedcare.access.context import system_caller
from sharedcare.app import Services, create_app
from sharedcare.cli import app as cli_app
from sharedcare.fhir.search import query as search_query
from sharedcare.ingest import dropfolder, sources
from sharedcare.ingest.inbox import Inbox
from sharedcare.settings import Settings, get_settings
from sharedcare.storage import inbox_store
from sharedcare.storage.inbox_store import Source
from sharedcare.storage.repository import SOURCE_PREFIX
from tests.conftest import NODE_CLIENT, token_for
from tests.spec.ingest.csv_golden import GOLDEN as CSV_GOLDEN
from tests.spec.ingest.feeds import MRN, adt, inbox, register, stored

KINDS = ["hl7", "ndjson", "csv"]


def batch(*messages: str) -> str:
    """An HL7 v2 batch file (FHS/BHS ... BTS/FTS) of the messages."""
    return "FHS|^~\\&|PAS|RJ7\rBHS|^~\\&|PAS|RJ7\r" + "".join(messages) + f"BTS|{len(messages)}\rFTS|1\r"


def _patient_bundle(n: int) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "identifier": [{"system": "https://example.org/gp", "value": f"G{n}"}],
               "name": [{"family": "Ashe"}]}
    return {"resourceType": "Bundle", "id": f"b{n}", "type": "transaction", "entry": [
        {"resource": patient, "request": {"method": "PUT", "url": f"Patient?identifier=https://example.org/gp|G{n}"}}]}


def drop(store: Services, kind: str) -> tuple[str, str, bytes, int]:
    """Register a source for a kind of file, and the file it sends: (source id, file name, bytes, messages)."""
    if kind == "hl7":
        register(store)
        text = batch(adt("A01", "F1"), adt("A08", "F2", when="20250728100000", family="Ibrahim-Khan"))
        return "RJ7", "adt-batch.hl7", text.encode(), 2
    if kind == "ndjson":
        sources.register(store.engine, Source("E85001", "E85001", "Practice", ("fhir",)))
        data = "\n".join(json.dumps(_patient_bundle(i)) for i in range(3)).encode()
        return "E85001", "patients.ndjson", data, 3
    sources.register(store.engine, Source("E09000002", "E09000002", "Barking and Dagenham", ("csv",),
                                          csv_mapping="social-care"))
    return "E09000002", "extract.csv", (CSV_GOLDEN / "social-care-home-care" / "input.csv").read_bytes(), 2


def settle(watcher: dropfolder.Watcher) -> dropfolder.Scan:
    """Two scans: the first sees a new file, the second finds it unchanged and takes it."""
    first = watcher.scan()
    assert first.taken == 0
    return watcher.scan()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def hl7_patients(store: Services, ods: str = "RJ7") -> list[dict[str, Any]]:
    q = search_query.parse("Patient", [("identifier", f"{MRN}|RJ70000002")], default_count=10, max_count=10)
    return [orjson.loads(s.data or b"{}") for s in store.repo.search(system_caller(organisation=ods), q, "").items]


def all_of(store: Services, res_type: str) -> list[dict[str, Any]]:
    q = search_query.parse(res_type, [], default_count=100, max_count=100)
    return [orjson.loads(s.data or b"{}") for s in store.repo.search(system_caller(), q, "").items]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


def test_a_file_dropped_in_a_sources_folder_is_stored_and_moved_to_done(store: Services, settings: Settings,
                                                                        root: Path) -> None:
    """An HL7 v2 batch file: each message stored as the folder's source, the file moved to done/ with
    the time in its name, and the record searchable once the inbox worker has processed it."""
    source_id, name, data, count = drop(store, "hl7")
    (root / source_id).mkdir()
    (root / source_id / name).write_bytes(data)
    box = inbox(store, settings)
    scan = settle(dropfolder.Watcher(box, root))
    assert (scan.done, scan.failed, scan.report.stored) == (1, 0, count)
    assert names(root / source_id) == ["done", "failed"]
    [moved] = names(root / source_id / "done")
    assert moved.endswith("Z-" + name)
    assert (root / source_id / "done" / moved).read_bytes() == data
    assert {(m.source_id, m.status) for m in stored(store)} == {("RJ7", "pending")}  # the worker processes
    box.drain()
    [patient] = hl7_patients(store)
    assert patient["name"][0]["family"] == "Ibrahim-Khan"
    assert patient["meta"]["source"] == SOURCE_PREFIX + "RJ7"


def test_a_sources_ndjson_file_is_stored_as_that_source_and_searchable(store: Services, settings: Settings,
                                                                       root: Path) -> None:
    source_id, name, data, count = drop(store, "ndjson")
    (root / source_id).mkdir()
    (root / source_id / name).write_bytes(data)
    box = inbox(store, settings)
    assert settle(dropfolder.Watcher(box, root)).report.stored == count
    box.drain()
    found = all_of(store, "Patient")
    assert len(found) == count
    assert {p["meta"]["source"] for p in found} == {SOURCE_PREFIX + "E85001"}
    assert len(names(root / source_id / "done")) == 1


def test_a_sources_csv_extract_is_stored_by_its_mapping_and_searchable(store: Services, settings: Settings,
                                                                        root: Path) -> None:
    source_id, name, data, count = drop(store, "csv")
    (root / source_id).mkdir()
    (root / source_id / name).write_bytes(data)
    box = inbox(store, settings)
    scan = settle(dropfolder.Watcher(box, root))
    assert (scan.done, scan.report.stored) == (1, count)
    box.drain()
    assert [m.status for m in stored(store)] == ["done"] * count
    assert len(all_of(store, "EpisodeOfCare")) == count
    assert {p["meta"]["source"] for p in all_of(store, "Patient")} == {SOURCE_PREFIX + "E09000002"}


def test_a_partial_or_hidden_file_is_never_taken(store: Services, settings: Settings, root: Path) -> None:
    """Writers write under a `.part` or `.tmp` name (or a hidden one) and rename when done."""
    source_id, name, data, _ = drop(store, "hl7")
    folder = root / source_id
    folder.mkdir()
    for partial in (name + ".part", name + ".TMP", "." + name):
        (folder / partial).write_bytes(data)
    watcher = dropfolder.Watcher(inbox(store, settings), root)
    for _ in range(3):
        assert watcher.scan().taken == 0
    assert stored(store) == []
    (folder / (name + ".part")).rename(folder / name)
    assert settle(watcher).done == 1
    assert names(folder) == sorted(["." + name, name + ".TMP", "done", "failed"])


def test_a_file_still_growing_waits_until_a_scan_finds_it_unchanged(store: Services, settings: Settings,
                                                                     root: Path) -> None:
    register(store)
    folder = root / "RJ7"
    folder.mkdir()
    path = folder / "growing.hl7"
    path.write_text(batch(adt("A01", "G1")).removesuffix("BTS|1\rFTS|1\r"))
    watcher = dropfolder.Watcher(inbox(store, settings), root)
    assert watcher.scan().waiting == 1  # first seen
    with path.open("a") as f:
        f.write(adt("A08", "G2", when="20250728100000"))
    scan = watcher.scan()
    assert (scan.taken, scan.waiting) == (0, 1)  # it changed since the last scan
    with path.open("a") as f:
        f.write("BTS|2\rFTS|1\r")
    assert watcher.scan().taken == 0
    scan = watcher.scan()
    assert (scan.done, scan.report.stored) == (1, 2)
    assert stored(store)[0].message_key == "G2"


def test_an_hl7_message_naming_another_facility_is_refused_and_the_file_goes_to_failed_with_its_reasons(
        store: Services, settings: Settings, root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """RJ1 is a registered source too: `sharedcare ingest` would store that message as RJ1's. From RJ7's
    folder it is refused, not stored; RJ7's own messages in the file stay stored."""
    register(store)
    register(store, "RJ1", "RJ1")
    folder = root / "RJ7"
    folder.mkdir()
    (folder / "mixed.hl7").write_text(batch(adt("A01", "M1"), adt("A01", "M2", facility="RJ1", family="Okonjo"),
                                            adt("A08", "M3", when="20250728100000")))
    caplog.set_level(logging.INFO, logger="sharedcare")
    box = inbox(store, settings)
    scan = settle(dropfolder.Watcher(box, root))
    assert (scan.done, scan.failed, scan.report.stored, scan.report.refused) == (0, 1, 2, 1)
    assert {(m.source_id, m.message_key) for m in stored(store)} == {("RJ7", "M1"), ("RJ7", "M3")}
    moved, reason = names(folder / "failed")
    assert moved.endswith("-mixed.hl7")
    assert reason == moved + ".reason.txt"
    text = (folder / "failed" / reason).read_text()
    assert "mixed.hl7, message 2: MSH-4 (and MSH-3) name a source other than the one whose folder" in text
    for content in ("Okonjo", "Ibrahim", "RJ70000002", "9625315403"):
        assert content not in text
        assert content not in caplog.text
    box.drain()
    assert hl7_patients(store, "RJ1") == []
    assert len(hl7_patients(store, "RJ7")) == 1
    (folder / "fixed.hl7").write_text(batch(adt("A01", "M1"), adt("A08", "M3", when="20250728100000"),
                                            adt("A03", "M4", when="20250729100000")))
    again = settle(dropfolder.Watcher(box, root))
    assert (again.done, again.report.stored, again.report.duplicates) == (1, 1, 2)  # only what is new


def test_an_hl7_message_from_another_system_is_refused_when_the_source_names_its_system(
        store: Services, settings: Settings, root: Path) -> None:
    register(store, "RJ7-PAS", "RJ7", system="PAS")
    register(store, "RJ7-LAB", "RJ7", system="LAB")
    folder = root / "RJ7-PAS"
    folder.mkdir()
    lab = adt("A01", "L1").replace("MSH|^~\\&|PAS|", "MSH|^~\\&|LAB|")
    (folder / "x.hl7").write_text(batch(adt("A01", "P1"), lab))
    scan = settle(dropfolder.Watcher(inbox(store, settings), root))
    assert (scan.failed, scan.report.stored, scan.report.refused) == (1, 1, 1)
    assert [(m.source_id, m.message_key) for m in stored(store)] == [("RJ7-PAS", "P1")]


def test_a_folder_that_is_not_an_active_source_is_left_alone_with_one_warning(
        store: Services, settings: Settings, root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An unknown folder name, a disabled source, or the node's own source (which writes as the node)."""
    register(store)
    register(store, "RJ1", "RJ1", status="disabled")
    inbox_store.node_source(store.engine)
    data = batch(adt("A01", "U1")).encode()
    for folder in ("NOBODY", "RJ1", inbox_store.NODE_SOURCE):
        (root / folder).mkdir()
        (root / folder / "feed.hl7").write_bytes(data)
    caplog.set_level(logging.WARNING, logger="sharedcare.dropfolder")
    watcher = dropfolder.Watcher(inbox(store, settings), root)
    for _ in range(3):
        scan = watcher.scan()
        assert (scan.taken, scan.folders_left_alone) == (0, 3)
    assert stored(store) == []
    for folder in ("NOBODY", "RJ1", inbox_store.NODE_SOURCE):
        assert names(root / folder) == ["feed.hl7"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3
    assert any("'NOBODY' is not a registered source" in w for w in warnings)
    assert any("'RJ1' is a disabled source" in w for w in warnings)


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_file_dropped_again_stores_nothing_twice(store: Services, settings: Settings, root: Path,
                                                          kind: str) -> None:
    source_id, name, data, count = drop(store, kind)
    (root / source_id).mkdir()
    box = inbox(store, settings)
    watcher = dropfolder.Watcher(box, root)
    (root / source_id / name).write_bytes(data)
    assert settle(watcher).report.stored == count
    (root / source_id / name).write_bytes(data)
    again = settle(watcher)
    assert (again.done, again.report.stored, again.report.duplicates) == (1, 0, count)
    assert len(stored(store)) == count
    assert len(names(root / source_id / "done")) == 2  # the time in their names keeps both


class Crash(BaseException):
    """The process dying: nothing after it runs."""


@pytest.mark.parametrize("kind", KINDS)
def test_a_crash_between_the_inbox_commit_and_the_move_duplicates_nothing(
        store: Services, settings: Settings, root: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    source_id, name, data, count = drop(store, kind)
    (root / source_id).mkdir()
    (root / source_id / name).write_bytes(data)
    box = inbox(store, settings)

    def crash(path: Path, sub: str) -> Path:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(dropfolder, "_move", crash)
        watcher = dropfolder.Watcher(box, root)
        watcher.scan()
        with pytest.raises(Crash):
            watcher.scan()
    assert len(stored(store)) == count  # committed, not moved
    assert (root / source_id / name).exists()
    restarted = settle(dropfolder.Watcher(box, root))
    assert (restarted.done, restarted.report.stored, restarted.report.duplicates) == (1, 0, count)
    assert len(stored(store)) == count
    assert not (root / source_id / name).exists()
    box.drain()
    assert {m.status for m in stored(store)} == {"done"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_stays_in_place_while_the_store_cannot_be_reached(
        store: Services, settings: Settings, root: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    source_id, name, data, count = drop(store, kind)
    (root / source_id).mkdir()
    (root / source_id / name).write_bytes(data)
    watcher = dropfolder.Watcher(inbox(store, settings), root)
    watcher.scan()

    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    with monkeypatch.context() as patch:
        patch.setattr(inbox_store, "receive", down)
        scan = watcher.scan()
    assert (scan.taken, scan.left) == (0, 1)
    assert names(root / source_id) == sorted(["done", "failed", name])
    scan = watcher.scan()  # the store is back: taken at once
    assert (scan.done, scan.report.stored) == (1, count)


def _cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SHAREDCARE_GC_FREEZE", "false")
    monkeypatch.setenv("SHAREDCARE_DROP_POLL_SECONDS", "0.05")
    get_settings.cache_clear()


def test_watch_once_takes_the_files_processes_them_and_says_what_it_did(
        store: Services, settings: Settings, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source_id, name, data, count = drop(store, "ndjson")
    (root / source_id).mkdir()
    (root / source_id / name).write_bytes(data)
    _cli_env(monkeypatch, settings)
    try:
        result = CliRunner().invoke(cli_app, ["watch", "--once", "--dir", str(root)])
        assert result.exit_code == 0, result.output
        said = " ".join(result.output.split())
        assert "1 files taken (1 done, 0 failed)" in said
        assert f"{count} messages stored" in said
        assert f"processed: {count} done" in said
        (root / source_id / "bad.ndjson").write_bytes(b"{not json\n")
        failed = CliRunner().invoke(cli_app, ["watch", "--once", "--dir", str(root)])
        assert failed.exit_code == 1
        assert "1 failed" in " ".join(failed.output.split())
    finally:
        get_settings.cache_clear()
    assert len(all_of(store, "Patient")) == count


def test_serve_watches_the_drop_folder_beside_the_listener_with_one_inbox_worker(
        store: Services, settings: Settings, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.live_server import free_port

    register(store)
    runs: list[Inbox] = []
    real_run = Inbox.run

    async def counted(self: Inbox, stop: asyncio.Event, **kwargs: Any) -> None:
        runs.append(self)
        await real_run(self, stop, **kwargs)

    monkeypatch.setattr(Inbox, "run", counted)
    (root / "RJ7").mkdir()
    (root / "RJ7" / "feed.hl7").write_text(batch(adt("A01", "S1")))
    served = settings.model_copy(update={"drop_dir": root, "drop_poll_seconds": 0.05, "mllp_port": free_port(),
                                         "mllp_allow_plain_loopback": True, "inbox_worker": True})
    headers = {"Authorization": f"Bearer {token_for(store, served, NODE_CLIENT)}"}
    found = _served_until_found(served, store, headers)
    assert found == 1
    assert len(runs) == 1
    assert len(names(root / "RJ7" / "done")) == 1


def test_serve_with_the_drop_folder_runs_one_inbox_worker(store: Services, settings: Settings,
                                                             root: Path) -> None:
    register(store)
    (root / "RJ7").mkdir()
    (root / "RJ7" / "feed.hl7").write_text(batch(adt("A01", "S1")))
    served = settings.model_copy(update={"drop_dir": root, "drop_poll_seconds": 0.05, "inbox_worker": True})
    headers = {"Authorization": f"Bearer {token_for(store, served, NODE_CLIENT)}"}
    assert _served_until_found(served, store, headers) == 1


def _served_until_found(served: Settings, store: Services, headers: dict[str, str]) -> int:
    """Serve the app until the dropped patient is found through the FHIR API (or 15 s have passed)."""
    with TestClient(create_app(served, store), base_url="http://testserver", headers=headers) as client:
        deadline = time.monotonic() + 15
        found = 0
        while time.monotonic() < deadline and not found:
            found = client.get(f"/fhir/Patient?identifier={MRN}|RJ70000002").json().get("total", 0)
            time.sleep(0.05)
    return int(found)
