"""The schema the migrations build is the one the code declares (storage/tables.py): every table,
column and index, on each backend. A migration that forgets an index the code relies on (or the code
that forgets what a migration made) fails here rather than as a slow search in production."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sharedcare.app import Services
from sharedcare.storage.tables import metadata


def test_the_migrated_schema_matches_the_declared_one(store: Services) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
