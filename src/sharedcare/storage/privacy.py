"""What privacy officers' reports and alerts read from the audit trail, grants and restrictions: the
only SQL for them. Every query is bounded by a time window [start, end) of stored timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, distinct, func, select

from sharedcare.storage import dialects
from sharedcare.storage.audit_store import touches
from sharedcare.storage.tables import (
    SHARED_PARTITION,
    access_grant,
    audit,
    node_setting,
    restriction,
    staff_person,
)

# Interactions that show a patient's data to the caller (what "records viewed" counts).
VIEWS = ("read", "vread", "search-type", "search-system", "search-compartment", "history-instance",
         "history-type", "operation")


@dataclass(frozen=True)
class Window:
    start: str
    end: str
    agent_org: str | None = None  # a privacy officer's organisation; None: every organisation

    def where(self) -> list[ColumnElement[bool]]:
        out = [audit.c.recorded >= self.start, audit.c.recorded < self.end]
        if self.agent_org is not None:
            out.append(audit.c.agent_org == self.agent_org)
        return out


def _rows(engine: Engine, stmt: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def grant_events(engine: Engine, w: Window) -> list[dict[str, Any]]:
    """Declared relationships and break-glass granted in the window, oldest first."""
    return _rows(engine, select(audit).where(
        *w.where(), audit.c.interaction.in_(["break-glass", "declare-relationship", "launch-context"]),
        audit.c.status == 201)
        .order_by(audit.c.seq))


def grants(engine: Engine, grant_ids: list[str]) -> dict[str, dict[str, Any]]:
    if not grant_ids:
        return {}
    rows = _rows(engine, select(access_grant).where(access_grant.c.grant_id.in_(grant_ids)))
    return {r["grant_id"]: r for r in rows}


def views(engine: Engine, agent_id: str, patient_id: str, start: str, end: str) -> int:
    """How many successful looks `agent_id` had at `patient_id`'s data in [start, end)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit).where(
            audit.c.agent_id == agent_id, touches([patient_id]), audit.c.recorded >= start, audit.c.recorded < end,
            audit.c.interaction.in_(VIEWS), audit.c.status == 200)).scalar_one())


def flagged_patients(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(restriction.c.patient_id).where(
            restriction.c.kind == "flagged").distinct()).scalars())


def looks_at(engine: Engine, w: Window, patients: list[str], agent: str | None = None) -> list[dict[str, Any]]:
    """Staff's (or one member of staff's) successful looks at any of `patients` in the window, oldest first."""
    if not patients:
        return []
    by_agent = [audit.c.agent_id == agent] if agent is not None else []
    return _rows(engine, select(audit).where(
        *w.where(), *by_agent, audit.c.agent_kind == "user", audit.c.interaction.in_(VIEWS), audit.c.status == 200,
        touches(patients)).order_by(audit.c.seq))


def people_looking(engine: Engine, w: Window) -> list[dict[str, Any]]:
    """The recorded persons (staff_person rows) of staff who looked at anyone's data in the window."""
    lookers = select(audit.c.agent_id).where(
        *w.where(), audit.c.agent_kind == "user", audit.c.interaction.in_(VIEWS), audit.c.status == 200,
        audit.c.partition_key != SHARED_PARTITION).distinct()
    return _rows(engine, select(staff_person).where(staff_person.c.agent_id.in_(lookers))
                 .order_by(staff_person.c.agent_id))


def set_staff_person(engine: Engine, row: dict[str, Any]) -> None:
    """Record (or replace) who a member of staff is as a person."""
    with dialects.writer(engine), engine.connect().execution_options(**dialects.write_options()) as conn, \
            conn.begin():
        conn.execute(staff_person.delete().where(staff_person.c.agent_id == row["agent_id"]))
        conn.execute(staff_person.insert().values(**row))


def staff_person_row(engine: Engine, agent_id: str) -> dict[str, Any] | None:
    found = _rows(engine, select(staff_person).where(staff_person.c.agent_id == agent_id))
    return found[0] if found else None


def volumes(engine: Engine, w: Window, more_than: int) -> list[tuple[str, int, int]]:
    """Staff who looked at more than `more_than` different patients in the window: (agent, patients,
    newest audit seq), busiest first."""
    with engine.connect() as conn:
        count = func.count(distinct(audit.c.partition_key))
        rows = conn.execute(select(audit.c.agent_id, count.label("n"), func.max(audit.c.seq).label("last")).where(
            *w.where(), audit.c.agent_kind == "user", audit.c.partition_key != SHARED_PARTITION,
            audit.c.interaction.in_(VIEWS), audit.c.status == 200)
            .group_by(audit.c.agent_id).having(count > more_than).order_by(count.desc()))
        return [(r.agent_id, int(r.n), int(r.last)) for r in rows]


def audit_rows(engine: Engine, seqs: list[int]) -> dict[int, dict[str, Any]]:
    if not seqs:
        return {}
    return {r["seq"]: r for r in _rows(engine, select(audit).where(audit.c.seq.in_(seqs)))}


ANNOUNCED = "privacy_alerts_announced"  # node_setting: the audit seq up to which grants were announced


def new_grant_counts(engine: Engine) -> dict[str, int]:
    """Grants (break-glass, declared relationships, launch contexts) audited since the last call, by
    interaction, and move the mark past them. Read first; written only when the mark moves (concurrent
    callers may both count the same grants)."""
    with engine.connect() as conn:
        mark = conn.execute(select(node_setting.c.value).where(node_setting.c.name == ANNOUNCED)).scalar()
        if mark is None:  # the first round: start from now, not from the whole history
            rows: list[Any] = []
            last = conn.execute(select(func.max(audit.c.seq))).scalar() or 0
        else:
            rows = list(conn.execute(select(audit.c.interaction, func.count(), func.max(audit.c.seq)).where(
                audit.c.seq > int(mark), audit.c.status == 201,
                audit.c.interaction.in_(["break-glass", "declare-relationship", "launch-context"]))
                .group_by(audit.c.interaction)).all())
            last = max((int(r[2]) for r in rows), default=None)
    if last is not None:
        with dialects.writer(engine), engine.connect().execution_options(**dialects.write_options()) as conn, \
                conn.begin():
            conn.execute(dialects.upsert(node_setting, ("name",), [{"name": ANNOUNCED, "value": str(last)}],
                                         conn.dialect.name))
    return {str(r[0]): int(r[1]) for r in rows}
