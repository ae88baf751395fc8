"""What one audit record says about one interaction (safety property 3).

One narrow row per interaction, allowed or denied, written by the Repository: a write's record is in the
same transaction as the write; a read's record is group-committed before the response is released
(storage/committer.py), so data is never served unaudited. Rows are hash-chained per partition and
served read-only as AuditEvent. Records hold ids and codes, never record content.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache

from sharedcare.access.context import Caller

# AuditEvent.action per interaction: Create, Read, Update, Delete, Execute.
ACTIONS = {
    "create": "C", "read": "R", "vread": "R", "update": "U", "patch": "U", "delete": "D",
    "history-instance": "R", "history-type": "R", "history-system": "R",
    "search-type": "E", "search-system": "E", "search-compartment": "E",
    "batch": "E", "transaction": "E", "operation": "E", "capabilities": "R",
    "declare-relationship": "E", "break-glass": "E",
    "declare-relationship-ended": "E", "break-glass-ended": "E", "launch-context": "E",
    "launch-context-ended": "E",
}


def outcome_code(status: int) -> str:
    """AuditEvent.outcome: 0 success, 4 minor failure (client error), 8 serious failure (server error)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    interaction: str
    status: int
    caller: Caller
    recorded: str
    res_type: str | None = None
    res_id: str | None = None
    version_id: int | None = None
    patients: tuple[str, ...] = ()
    query: str | None = None

    @property
    def partition_key(self) -> str:
        return self.patients[0] if self.patients else "_shared"

    def row(self) -> dict[str, object]:
        c = self.caller
        return {
            "recorded": self.recorded, "partition_key": self.partition_key,
            "interaction": self.interaction, "action": ACTIONS.get(self.interaction, "E"),
            "outcome": outcome_code(self.status), "status": self.status,
            "agent_kind": c.kind, "agent_id": c.agent_id, "agent_role": c.role, "agent_org": c.organisation,
            "purpose": c.purpose, "on_behalf_of": c.on_behalf_of or c.patient,
            "res_type": self.res_type, "res_id": self.res_id, "version_id": self.version_id,
            "patients": " ".join(self.patients) or None, "query": self.query, "source_ip": c.source_ip,
        }


_UNHASHED = frozenset(("seq", "prev_hash", "hash"))


@lru_cache(maxsize=64)
def _hashed_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The fields a row's hash covers, in name order (rows come in a handful of key sets)."""
    return tuple(sorted(k for k in keys if k not in _UNHASHED))


def chain_hash(prev_hash: str, row: dict[str, object]) -> str:
    """The hash of a row given the previous hash in its partition: SHA-256 over the previous hash and
    then, for every field in name order, a unit separator, the name, `=` and the value as text."""
    text = prev_hash + "".join([f"\x1f{key}={row[key]}" for key in _hashed_keys(tuple(row))])
    return hashlib.sha256(text.encode()).hexdigest()


GENESIS = "0" * 64


@dataclass
class AuditMark:
    """Set per request by the app; the Repository marks it when it writes a record, so the app can
    audit requests that failed before reaching the Repository (a bad body, an unknown type)."""

    audited: bool = False
    interactions: list[str] = field(default_factory=list)


current_mark: ContextVar[AuditMark | None] = ContextVar("sharedcare_audit_mark", default=None)


def mark_audited() -> None:
    mark = current_mark.get()
    if mark is not None:
        mark.audited = True
