"""Index rows carry their resource's search order key (`created_seq`), however the resource was
written: created alone or in a transaction, updated, or created by update with a client id. Searches
driven by an index lookup depend on it for their order and paging."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sharedcare.app import Services
from sharedcare.storage.tables import INDEX_TABLES, resource
from tests.support.migrations import load_migration

JSON = {"Content-Type": "application/fhir+json"}


def _mismatches(store: Services) -> list[tuple[str, str, str]]:
    bad = []
    with store.engine.connect() as conn:
        order = {(r.res_type, r.res_id): r.created_seq for r in conn.execute(
            select(resource.c.res_type, resource.c.res_id, resource.c.created_seq))}
        for table in INDEX_TABLES:
            for r in conn.execute(select(table.c.res_type, table.c.res_id, table.c.created_seq)):
                if r.created_seq != order[(r.res_type, r.res_id)]:
                    bad.append((table.name, r.res_type, r.res_id))
    return bad


def test_every_index_row_carries_its_resource_created_seq(client: TestClient, store: Services) -> None:
    one = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"}, headers=JSON).json()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0f5b7a52-3c1e-4f25-9b1a-1d6c1e0a9c01",
         "resource": {"resourceType": "Patient", "gender": "female", "name": [{"family": "Tx"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:0f5b7a52-3c1e-4f25-9b1a-1d6c1e0a9c01"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    assert client.post("/fhir", json=bundle, headers=JSON).status_code == 200
    one["gender"] = "other"
    assert client.put(f"/fhir/Patient/{one['id']}", json=one, headers=JSON).status_code == 200
    own = {"resourceType": "Patient", "id": "client-chosen", "gender": "unknown"}
    assert client.put("/fhir/Patient/client-chosen", json=own, headers=JSON).status_code == 201
    assert _mismatches(store) == []


def test_a_lookup_driven_search_keeps_creation_order_after_updates(client: TestClient) -> None:
    made = [client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"},
                        headers=JSON).json() for _ in range(4)]
    first = made[0]
    first["name"] = [{"family": "Changed"}]
    assert client.put(f"/fhir/Patient/{first['id']}", json=first, headers=JSON).status_code == 200
    found = []
    url = "/fhir/Patient?gender=female&_count=3"
    while url:
        body = client.get(url).json()
        found += [e["resource"]["id"] for e in body.get("entry", [])]
        url = next((lk["url"].split("testserver", 1)[1] for lk in body["link"] if lk["relation"] == "next"), "")
    assert found == [p["id"] for p in made]


def test_date_rows_are_bucketed_alike_when_written_and_when_migrated(client: TestClient, store: Services) -> None:
    """Each date row's window bucket (its month, "L" across months, "M" for a resource with several
    values) is the same whether the write path gave it or migration 0006 filled it in."""
    from sqlalchemy import text

    from sharedcare.storage.tables import idx_date

    goal = {"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "walk"},
            "subject": {"reference": "Patient/x"}}
    for dues in (["2020-03-15"], ["2020-01-10", "2020-06-20"]):
        assert client.post("/fhir/Goal", json={**goal, "target": [{"dueDate": d} for d in dues]},
                           headers=JSON).status_code == 201
    for period in ({"start": "2020-02-28T22:00:00Z", "end": "2020-03-02T02:00:00Z"}, {"start": "2019-12-01"}):
        enc = {"resourceType": "Encounter", "status": "finished", "period": period,
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}
        assert client.post("/fhir/Encounter", json=enc, headers=JSON).status_code == 201
    cols = (idx_date.c.res_type, idx_date.c.res_id, idx_date.c.param, idx_date.c.low, idx_date.c.bucket)
    with store.engine.connect() as conn:
        written = sorted(conn.execute(select(*cols)).all())
    assert {r.bucket for r in written if r.res_type == "Goal"} == {"2020-03", "M"}
    assert {r.bucket for r in written if r.res_type == "Encounter" and r.param == "date"} == {"L"}
    migration = load_migration("0006_date_window")
    with store.engine.begin() as conn:
        conn.execute(idx_date.update().values(bucket=None))
        conn.execute(text(migration.FILL))
    with store.engine.connect() as conn:
        assert sorted(conn.execute(select(*cols)).all()) == written


def test_dates_before_the_year_1000_are_stored_with_four_digit_years(client: TestClient, store: Services) -> None:
    """Text order must be time order: "0999-..." sorts before "2020-...", "999-..." would not.
    Migration 0008 pads rows written with short years; here rows are shortened as the old code wrote
    them and the migration's updates must give back what the write path stores."""
    from sqlalchemy import text

    from sharedcare.storage.tables import idx_date

    goal = {"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "walk"},
            "subject": {"reference": "Patient/x"}}
    for due in ("0999-03-15", "0005-01-01", "2020-03-15"):
        assert client.post("/fhir/Goal", json={**goal, "target": [{"dueDate": due}]}, headers=JSON).status_code == 201
    cols = (idx_date.c.res_id, idx_date.c.low, idx_date.c.high, idx_date.c.bucket)
    with store.engine.connect() as conn:
        written = sorted(conn.execute(select(*cols).where(idx_date.c.res_type == "Goal")).all())
    assert {r.low[:7] for r in written} == {"0999-03", "0005-01", "2020-03"}
    assert {r.bucket for r in written} == {"0999-03", "0005-01", "2020-03"}
    migration = load_migration("0008_four_digit_years")
    with store.engine.begin() as conn:  # as the old code wrote them: leading zeros of the year dropped
        for zeros in ("000", "00", "0"):
            n = len(zeros)
            conn.execute(text(f"UPDATE idx_date SET low = substr(low, {n + 1}), high = substr(high, {n + 1}), "
                              f"bucket = substr(low, {n + 1}, 7) WHERE substr(low, 1, {n}) = '{zeros}'"))
        for statement in migration.statements(store.engine.dialect.name):
            conn.execute(text(statement))
    with store.engine.connect() as conn:
        assert sorted(conn.execute(select(*cols).where(idx_date.c.res_type == "Goal")).all()) == written


def test_postgresql_finds_string_prefixes_through_the_lookup_index(postgres_url: str) -> None:
    """`family=smi` is a LIKE prefix. In the database collation's order the values with a prefix need
    not sit together, so a plain B-tree cannot serve it and every family name would be read; the
    lookup index orders by character on PostgreSQL (migration 0010) and takes the prefix as a range."""
    from sqlalchemy import text

    from sharedcare.storage import database
    from sharedcare.storage.tables import idx_string

    engine = database.make_engine(postgres_url)
    try:
        with engine.connect() as conn, conn.begin() as tx:  # rolled back: the shared database stays empty
            conn.execute(idx_string.insert(), [
                {"res_type": "Patient", "res_id": f"p{i}", "param": param, "value": f"{chr(97 + i % 26)}name{i}",
                 "exact": None, "created_seq": i} for i in range(4000) for param in ("family", "given")])
            conn.execute(text("ANALYZE idx_string"))
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(r[0] for r in conn.execute(text(
                "EXPLAIN SELECT res_id FROM idx_string WHERE res_type = 'Patient' AND param = 'family' "
                "AND value LIKE 'smi%'")))
            tx.rollback()
    finally:
        engine.dispose()
    assert "ix_idx_string_lookup" in plan
    assert "~>=~ 'smi'" in plan  # the prefix is a range of the index, not a filter on every entry


@pytest.mark.parametrize("query", [
    "Observation?code=http://loinc.org|29463-7&_total=accurate&_count=5",
    "Observation?subject:Patient.family=Okafor&code=http://loinc.org|29463-7&_total=accurate&_count=5",
])
def test_token_and_chained_searches_read_their_matches_from_the_index_alone(
        client: TestClient, store: Services, query: str) -> None:
    """`code=http://loinc.org|29463-7` is the usual form of a token search. Its page and its count
    find the code in the lookup index and test the system there too (migration 0012): before, the
    count of a common code read each match's table row only to compare its system (4.9 ms for 1,000
    matches on a warm database, one random disk read each on a cold one). A chain through the
    patient's name tests each of the named patients' references (type, locality) and each
    observation's code in the lookup indexes too; only the page's own resources are read."""
    from sqlalchemy import event

    named = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Okafor"}]},
                        headers=JSON).json()["id"]
    for i in range(40):
        obs = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{named}"},
               "code": {"coding": [{"system": "http://loinc.org" if i % 4 else "http://other.example",
                                    "code": "29463-7" if i % 2 else "8302-2"}]}}
        assert client.post("/fhir/Observation", json=obs, headers=JSON).status_code == 201
    seen: list[tuple[str, object]] = []

    def remember(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        if "idx_token" in statement:
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", remember)
    try:
        body = client.get(f"/fhir/{query}").json()
    finally:
        event.remove(store.engine, "before_cursor_execute", remember)
    assert body["total"] == 20
    assert len(seen) >= 2  # the page and the count
    pg = store.engine.dialect.name == "postgresql"
    if pg:
        with store.engine.connect() as conn:
            vacuum = conn.execution_options(isolation_level="AUTOCOMMIT")
            vacuum.exec_driver_sql("VACUUM ANALYZE idx_token, idx_reference")
    with store.engine.connect() as conn:
        if pg:
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_bitmapscan = off")
        for statement, parameters in seen:
            plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql(
                ("EXPLAIN " if pg else "EXPLAIN QUERY PLAN ") + statement, parameters))  # type: ignore[arg-type]
            lines = [line for line in plan.splitlines() for t in ("idx_token", "idx_reference")
                     if f" on {t}" in line or f"SEARCH {t}" in line or f"SCAN {t}" in line]
            assert lines, plan
            for line in lines:
                assert ("Index Only Scan" if pg else "COVERING INDEX") in line, plan
        if pg:
            conn.exec_driver_sql("RESET ALL")


def test_no_two_resources_of_a_type_share_a_search_order_key(client: TestClient, store: Services) -> None:
    """Pages join index rows to resources by (res_type, created_seq); the database refuses a second
    resource with the same key (migration 0013), so a page can never show a resource that did not match."""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    made = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"}, headers=JSON).json()
    with store.engine.connect() as conn:
        row = conn.execute(select(resource).where(resource.c.res_id == made["id"])).one()
        with pytest.raises(IntegrityError):
            conn.execute(insert(resource).values({**row._asdict(), "res_id": "another"}))
        conn.rollback()
