"""The caller context carried by every Repository call: who is asking, for whom, and why.

A caller comes from a bearer token (access/tokens.py) or a web session; both store the context as
JSON (`to_json` / `from_json`) when they are issued, so a request rebuilds exactly the context that
was granted, and a role change takes effect only through a new sign-in or token.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import orjson

from sharedcare.access import scopes as smart
from sharedcare.access.roles import Activity, activities

AgentKind = Literal["system", "user", "patient", "anonymous"]
AGENT_KINDS: tuple[AgentKind, ...] = ("system", "user", "patient", "anonymous")

# AuditEvent.purposeOfUse codes (v3 PurposeOfUse): treatment, emergency treatment, operations, admin.
TREAT, ETREAT, HOPERAT, SYSADMIN = "TREAT", "ETREAT", "HOPERAT", "SYSADMIN"


@dataclass(frozen=True)
class Caller:
    """Who is asking (agent), for whom (patient context / on behalf of), and why (purpose of use).

    - `system`: a backend service (client credentials) or the node itself. With an `organisation` it
      is that source organisation's system: it writes only as that source.
    - `user`: a member of staff acting in one role profile: an SDS job `role` at an `organisation`.
    - `patient`: a person signed in to see their own record (`nhs_number`, verified at P9).
    """

    kind: AgentKind
    agent_id: str
    purpose: str = TREAT
    role: str | None = None  # SDS job role code of a user's selected role profile
    organisation: str | None = None  # ODS code of the organisation the agent acts for
    on_behalf_of: str | None = None  # a person a system client acts for
    patient: str | None = None  # the SMART launch patient of a patient-facing token
    scopes: tuple[str, ...] = field(default=())
    source_ip: str | None = None
    nhs_number: str | None = None  # a patient caller's own NHS number
    client_id: str | None = None  # the SMART client the token was issued to
    aal: int | None = None  # a person's authentication assurance level, 1-3 (access/assurance.py)

    def with_ip(self, ip: str | None) -> Caller:
        return dataclasses.replace(self, source_ip=ip)

    @cached_property
    def activities(self) -> frozenset[Activity]:
        """What a user's role profile lets them do (nothing for other kinds of caller)."""
        return activities([self.role]) if self.kind == "user" and self.role else frozenset()

    @cached_property
    def resource_scopes(self) -> tuple[smart.Scope, ...]:
        """The SMART resource scopes granted (parsed once)."""
        return smart.parse_all(self.scopes)

    def to_json(self) -> str:
        """The context a token or session keeps (everything but the request's address)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "source_ip"}
        data["scopes"] = list(self.scopes)
        return orjson.dumps(data).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> Caller:
        data: dict[str, Any] = orjson.loads(text)
        if data.get("kind") not in AGENT_KINDS or not isinstance(data.get("agent_id"), str):
            raise ValueError("a stored caller context has no valid kind or agent")
        names = {f.name for f in dataclasses.fields(cls)} - {"source_ip"}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["scopes"] = tuple(kwargs.get("scopes") or ())
        return cls(**kwargs)


def system_caller(node_id: str = "local", *, purpose: str = SYSADMIN, organisation: str | None = None) -> Caller:
    """The node acting as itself (CLI loads, migrations), or for one source organisation's feed."""
    return Caller(kind="system", agent_id=f"system:{node_id}", purpose=purpose, scopes=("system/*.cruds",),
                  organisation=organisation)
