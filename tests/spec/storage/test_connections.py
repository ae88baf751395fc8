"""What the store's PostgreSQL connections are set up with."""

from __future__ import annotations

from sqlalchemy import text

from sharedcare.storage import database


def test_postgresql_sessions_run_no_parallel_query(postgres_url: str) -> None:
    """Parallel workers only slow the store's short index lookups down (see storage/database.py)."""
    engine = database.make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW max_parallel_workers_per_gather")).scalar_one() == "0"
    finally:
        engine.dispose()
