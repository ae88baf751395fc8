"""SQLite's planner statistics are kept in step with the store (storage/database.refresh_statistics).

SQLite keeps none by itself, and without them a search on a family name and a birth date tested each
candidate's birth date by scanning half the date index (300 ms instead of 3 ms at 10,000 Patients).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from sharedcare.access.context import system_caller
from sharedcare.app import Services
from sharedcare.fhir.search import query as search_query
from sharedcare.storage import database, search
from sharedcare.storage.tables import node_setting

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL's autovacuum keeps its own


def people(store: Services, count: int) -> None:
    with store.repo.unit(system_caller(), "create") as unit:
        for i in range(count):
            unit.create({"resourceType": "Patient", "name": [{"family": f"Family{i % 50}", "given": ["Ann"]}],
                         "birthDate": f"19{50 + i % 40}-0{1 + i % 9}-1{i % 10}"})


def plan(store: Services, items: list[tuple[str, str]]) -> str:
    """The SQLite query plan of a Patient search's page query."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))
    from sqlalchemy import event

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        q = search_query.parse("Patient", items, default_count=50, max_count=1000)
        with store.engine.connect() as conn:
            search.page(conn, q, store.repo.visible(system_caller()), None, "http://x/fhir")
            statement, parameters = next(s for s in seen if "idx_date" in s[0])
            return " | ".join(str(row[3]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                                            parameters))
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)


def stats_taken_at(store: Services) -> int | None:
    with store.engine.connect() as conn:
        value = conn.execute(select(node_setting.c.value).where(
            node_setting.c.name == database.STATISTICS_AT)).scalar()
    return int(value) if value is not None else None


def test_statistics_are_taken_when_the_store_has_grown_and_not_otherwise(store: Services) -> None:
    people(store, 300)
    assert database.refresh_statistics(store.engine)  # first taken when the store was empty
    assert stats_taken_at(store) == 300
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'idx_date'")).scalar_one() > 0
    assert not database.refresh_statistics(store.engine)  # nothing new since
    people(store, 350)
    assert database.refresh_statistics(store.engine)  # more than doubled


def test_a_search_on_name_and_birth_date_looks_up_each_candidates_dates(store: Services) -> None:
    people(store, 600)
    items = [("family", "Family7"), ("birthdate", "1957-08-17")]
    database.refresh_statistics(store.engine, force=True)
    assert "ix_idx_date_high" not in plan(store, items)
