"""CSV extracts through the inbox: each row one message, keyed by the file's checksum and the row,
mapped when processed by the column mapping registered with its source; a bad row is a dead letter
while the others are written."""

from __future__ import annotations

from sharedcare.app import Services
from sharedcare.ingest import csv_feed, sources
from sharedcare.settings import Settings
from sharedcare.storage.inbox_store import Source
from tests.spec.ingest.csv_golden import GOLDEN as CSV_GOLDEN
from tests.spec.ingest.feeds import inbox, stored

HEADER = ("case_id,service_id,nhs_number,given_name,family_name,birth_date,sex,postcode,service,start_date,"
          "end_date,hours_per_week,key_worker,team\n")


def _council(store: Services, mapping: str = "social-care") -> Source:
    return sources.register(store.engine, Source("E09000002", "E09000002", "Barking and Dagenham", ("csv",),
                                                 csv_mapping=mapping))


def test_an_extracts_rows_are_stored_once_and_written_by_the_sources_mapping(store: Services,
                                                                             settings: Settings) -> None:
    council = _council(store)
    box = inbox(store, settings)
    data = (CSV_GOLDEN / "social-care-home-care" / "input.csv").read_bytes()
    split = csv_feed.split(council, data, "E09000002.csv")
    assert split.problems == []
    assert [i.message_key.rsplit(":", 1)[1] for i in split.items] == ["2", "3"]
    box.receive_items(split.items)
    assert [r.duplicate for r in box.receive_items(csv_feed.split(council, data, "again.csv").items)] == [True, True]
    box.drain()
    rows = stored(store)
    assert [m.status for m in rows] == ["done", "done"]
    written = [ref.split("/")[0] for m in rows for ref in __import__("json").loads(m.outcome or "{}")["written"]]
    assert written.count("Patient") == 2
    assert written.count("EpisodeOfCare") == 2
    assert "CarePlan" in written


def test_a_row_the_mapping_cannot_read_is_a_dead_letter_naming_the_column(store: Services,
                                                                          settings: Settings) -> None:
    council = _council(store)
    box = inbox(store, settings)
    data = (HEADER + "PE1,SC1,,Ana,Silva,1950-13-40,female,IG11 6YN,home-care,2025-04-20,,14,A Worker,Team\n"
            "PE2,SC2,,Bo,Lee,1951-05-17,male,IG11 6YN,home-care,2025-04-20,,10,A Worker,Team\n").encode()
    box.receive_items(csv_feed.split(council, data, "x.csv").items)
    box.drain()
    dead, done = stored(store)[1], stored(store)[0]  # newest first
    assert done.status == "done"
    assert dead.status == "dead"
    assert dead.error is not None
    assert "birth_date" in dead.error
    assert "1950-13-40" not in dead.error


def test_a_row_with_the_wrong_number_of_cells_is_reported_and_not_stored(store: Services) -> None:
    council = _council(store)
    split = csv_feed.split(council, (HEADER + "PE1,SC1\n").encode(), "short.csv")
    assert split.items == []
    assert split.problems == ["short.csv, row 2: 2 columns where the header has 14"]


def test_a_source_without_a_mapping_dead_letters_its_rows_with_that_reason(store: Services,
                                                                           settings: Settings) -> None:
    council = sources.register(store.engine, Source("E09000004", "E09000004", "Bexley", ("csv",)))
    box = inbox(store, settings)
    data = (CSV_GOLDEN / "social-care-home-care" / "input.csv").read_bytes()
    box.receive_items(csv_feed.split(council, data, "E09000004.csv").items)
    box.drain()
    assert {(m.status, m.error) for m in stored(store)} == {
        ("dead", "HL7 error 101: the source has no CSV column mapping registered")}
