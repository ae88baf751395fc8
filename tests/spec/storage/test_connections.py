"""What the store's PostgreSQL connections are set up with."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from sharedcare.app import Services
from sharedcare.storage import database


def test_postgresql_sessions_run_no_parallel_query(postgres_url: str) -> None:
    """Parallel workers only slow the store's short index lookups down (see storage/database.py)."""
    engine = database.make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW max_parallel_workers_per_gather")).scalar_one() == "0"
    finally:
        engine.dispose()


def test_a_connection_that_died_while_idle_is_replaced_before_use(postgres_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A database restart or an idle timeout kills pooled connections; the next request must not
    get one of them (it would fail). Connections idle longer than PING_IDLE_S are checked first."""
    engine = database.make_engine(postgres_url, pool_size=1)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        killer = database.make_engine(postgres_url, pool_size=1)
        with killer.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
        killer.dispose()
        monkeypatch.setattr(database, "PING_IDLE_S", 0.0)
        with engine.connect() as conn:  # the dead one is found out and replaced
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check costs a round trip; connections used a moment ago skip it, idle ones do not."""
    engine = database.make_engine(postgres_url, pool_size=1)
    pings: list[object] = []
    real = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(c) or real(c))
    try:
        for _ in range(5):
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        assert pings == []
        monkeypatch.setattr(database, "PING_IDLE_S", 0.0)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert len(pings) == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_the_api_recovers_when_the_database_drops_every_connection(client: TestClient, store: Services,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart or fail-over ends every session. A request caught on a dead connection is a 503 the
    client can retry (never a 500, never a wrong answer); reads by id retry by themselves; the pool
    starts afresh, so the next requests succeed."""
    monkeypatch.setattr(database, "PING_IDLE_S", 3600.0)  # the connections count as in steady use
    made = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "other"},
                       headers={"Content-Type": "application/fhir+json"}).json()
    for _ in range(3):
        assert client.get("/fhir/Patient?gender=other").status_code == 200
        assert client.get(f"/fhir/Patient/{made['id']}").status_code == 200

    def drop_every_session() -> None:
        killer = database.make_engine(str(store.engine.url.render_as_string(hide_password=False)), pool_size=1)
        with killer.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        killer.dispose()

    drop_every_session()
    assert client.get(f"/fhir/Patient/{made['id']}").status_code == 200  # retried on a new connection
    drop_every_session()
    first = client.get("/fhir/Patient?gender=other")
    assert first.status_code in (200, 503)
    if first.status_code == 503:
        assert first.json()["issue"][0]["code"] == "transient"
    for _ in range(3):
        assert client.get("/fhir/Patient?gender=other").status_code == 200
        assert client.get(f"/fhir/Patient/{made['id']}").status_code == 200
