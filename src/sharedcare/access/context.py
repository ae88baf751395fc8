"""The caller context carried by every Repository call: who is asking, for whom, and why.

Until sign-in exists (the access issue), the API runs every request as the node's system context.
The access issue fills these fields from tokens and sessions; nothing downstream needs to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AgentKind = Literal["system", "user", "patient", "anonymous"]

# AuditEvent.purposeOfUse codes (v3 PurposeOfUse): treatment, emergency treatment, operations, admin.
TREAT, ETREAT, HOPERAT, SYSADMIN = "TREAT", "ETREAT", "HOPERAT", "SYSADMIN"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking (agent), for whom (patient context / on behalf of), and why (purpose of use)."""

    kind: AgentKind
    agent_id: str
    purpose: str = TREAT
    role: str | None = None  # National RBAC job role code, once sign-in exists
    organisation: str | None = None  # ODS code of the organisation the agent acts for
    on_behalf_of: str | None = None  # a person a system client acts for
    patient: str | None = None  # the patient context of a patient-facing token
    scopes: tuple[str, ...] = field(default=())
    source_ip: str | None = None

    def with_ip(self, ip: str | None) -> Caller:
        return Caller(self.kind, self.agent_id, self.purpose, self.role, self.organisation,
                      self.on_behalf_of, self.patient, self.scopes, ip)


def system_caller(node_id: str = "local", *, purpose: str = SYSADMIN) -> Caller:
    """The node acting as itself (CLI loads, migrations, the API until sign-in exists)."""
    return Caller(kind="system", agent_id=f"system:{node_id}", purpose=purpose, scopes=("system/*.cruds",))
