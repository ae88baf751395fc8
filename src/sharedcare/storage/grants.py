"""Declared relationships and break-glass grants in the database (`access_grant`): the only SQL for them.

A grant and the audit record of making it commit in one transaction: no grant without its audit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update

from sharedcare.access.audit import AuditRecord
from sharedcare.storage import audit_store, dialects
from sharedcare.storage.tables import access_grant


@dataclass(frozen=True)
class GrantRow:
    grant_id: str
    kind: str
    agent_id: str
    organisation: str
    role: str
    patient_id: str
    reason: str
    created: str
    until: str
    ended: str | None


class GrantStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, row: GrantRow, record: AuditRecord) -> None:
        with dialects.writer(self.engine), \
                self.engine.connect().execution_options(**dialects.write_options()) as conn, conn.begin():
            conn.execute(insert(access_grant).values(**row.__dict__))
            audit_store.append(conn, [record])

    def between(self, start: str, end: str, kinds: Iterable[str] = ("declared", "break-glass")) -> list[GrantRow]:
        """Grants made in [start, end), oldest first (the privacy officer's report)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(access_grant).where(
                access_grant.c.created >= start, access_grant.c.created < end,
                access_grant.c.kind.in_(list(kinds))).order_by(access_grant.c.created, access_grant.c.grant_id))
            return [GrantRow(**r._mapping) for r in rows]

    def active(self, agent_id: str, now: str) -> list[GrantRow]:
        """An agent's grants in force at `now`."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(access_grant).where(
                access_grant.c.agent_id == agent_id, access_grant.c.until > now, access_grant.c.ended.is_(None))
                .order_by(access_grant.c.created))
            return [GrantRow(**r._mapping) for r in rows]

    def in_force(self, agent_id: str, patient_id: str, kind: str, now: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(access_grant.c.grant_id).where(
                access_grant.c.agent_id == agent_id, access_grant.c.patient_id == patient_id,
                access_grant.c.kind == kind, access_grant.c.until > now, access_grant.c.ended.is_(None))
                .limit(1)).first() is not None

    def end_expired(self, now: str, record: Callable[[GrantRow], AuditRecord]) -> list[GrantRow]:
        """Mark grants whose time is up as ended, each with an audit record (one transaction)."""
        with dialects.writer(self.engine), \
                self.engine.connect().execution_options(**dialects.write_options()) as conn, conn.begin():
            due = [GrantRow(**r._mapping) for r in conn.execute(select(access_grant).where(
                access_grant.c.until <= now, access_grant.c.ended.is_(None)))]
            if not due:
                return []
            for row in due:
                conn.execute(update(access_grant).where(access_grant.c.grant_id == row.grant_id)
                             .values(ended=row.until))
            audit_store.append(conn, [record(row) for row in due])
        return due
