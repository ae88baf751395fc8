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

from sharedcare.access.context import Caller
from sharedcare.access.tokens import TokenService
from sharedcare.app import Services, create_app, open_services
from sharedcare.settings import Settings
from sharedcare.storage.oauth import OAuthStore
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
    # The tests drive the inbox themselves (`Inbox.drain`); a test of `serve`'s own worker turns it on.
    return Settings(database_url=url, base_url=BASE_URL, group_commit_ms=0.5, gc_freeze=False, inbox_worker=False)


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


# The caller of the `client` fixture: a backend system client of the node with every scope (what
# `sharedcare clients add tests --scope "system/*.cruds"` registers). Access tests make their own.
NODE_CLIENT = Caller(kind="system", agent_id="client:tests", scopes=("system/*.cruds",), client_id="tests")


def token_for(store: Services, settings: Settings, caller: Caller) -> str:
    """A bearer token carrying `caller`, minted directly on the store (as the node itself may)."""
    return TokenService(OAuthStore(store.engine), settings).issue_for(caller, caller.client_id or "tests",
                                                                      " ".join(caller.scopes))


@pytest.fixture
def client(store: Services, settings: Settings) -> Iterator[TestClient]:
    """An HTTP client on the app, authenticated as the node's all-scopes system client."""
    headers = {"Authorization": f"Bearer {token_for(store, settings, NODE_CLIENT)}"}
    with TestClient(create_app(settings, store), base_url="http://testserver", headers=headers) as c:
        yield c


@pytest.fixture
def anonymous_client(store: Services, settings: Settings) -> Iterator[TestClient]:
    """An HTTP client on the app that sends no credentials."""
    with TestClient(create_app(settings, store), base_url="http://testserver") as c:
        yield c
