"""Fixtures every test can use.

`store` is the heart of it: one behaviour, every backend. It is parametrised over the embedded SQLite
store and a real PostgreSQL server the test session starts itself (never skipped: if PostgreSQL
cannot start, the tests fail). `client` is an HTTP client on the app over that store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from sharedcare.app import Services, create_app, open_services
from sharedcare.settings import Settings
from sharedcare.storage.tables import metadata
from tests.support.conformance import conformance_path
from tests.support.postgres import PostgresServer

BASE_URL = "http://testserver/fhir"


@pytest.fixture
def conformance() -> Path:
    """The root of ../shared/conformance (skips, or fails under CI, when absent)."""
    return conformance_path()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresServer) -> str:
    from sharedcare.storage import database

    url = postgres.create_database("sharedcare_test")
    engine = database.make_engine(url)
    database.upgrade(engine)
    engine.dispose()
    return url


def _truncate_all(url: str) -> None:
    from sharedcare.storage import database

    engine = database.make_engine(url)
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    url = f"sqlite:///{tmp_path / 'store.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    return Settings(database_url=url, base_url=BASE_URL, group_commit_ms=0.5, gc_freeze=False)


@pytest.fixture
def store(settings: Settings, backend: str) -> Iterator[Services]:
    """An empty store on each backend."""
    if backend == "postgresql":
        _truncate_all(settings.database_url)
    services = open_services(settings, migrate=backend == "sqlite")
    try:
        yield services
    finally:
        services.committer.close()
        services.engine.dispose()


@pytest.fixture
def client(store: Services, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store), base_url="http://testserver") as c:
        yield c
