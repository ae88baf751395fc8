"""Access staff assert themselves: declared relationships and break-glass (issue 5, item 4).

- A *declared relationship* (like the Summary Care Record's self-claimed legitimate relationship): a
  member of staff whose job role allows it says they are caring for a person their organisation has
  no recorded relationship with, and why. It lasts `DECLARED` and counts as a relationship, so a
  person's objection still applies. Privacy officers see every one (report and alert).
- *Break-glass*: emergency access without any relationship, for one patient only, time-boxed
  (`BREAK_GLASS`), with a reason; it overrides a missing relationship and an objection (with an alert),
  never the sensitive and confidential labels (access/policy.py). Its audit record carries purpose of
  use ETREAT; when it runs out an "override stopped" audit record is written.

A reason is required (a blank one is refused, and nothing is granted). Reasons are kept in the grant
table for privacy officers; they are never logged.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta

from sharedcare.access import assurance
from sharedcare.access.audit import AuditRecord
from sharedcare.access.context import ETREAT, Caller
from sharedcare.access.roles import Activity
from sharedcare.errors import BadRequest, Forbidden
from sharedcare.storage.grants import GrantRow, GrantStore
from sharedcare.storage.indexing import stored_instant

DECLARED = timedelta(days=7)
BREAK_GLASS = timedelta(hours=4)
LAUNCH = timedelta(hours=12)
MIN_REASON, MAX_REASON = 10, 1000
KINDS = {"declared": (Activity.DECLARE_RELATIONSHIP, DECLARED), "break-glass": (Activity.BREAK_GLASS, BREAK_GLASS),
         "launch": (Activity.DECLARE_RELATIONSHIP, LAUNCH)}
INTERACTIONS = {"declared": "declare-relationship", "break-glass": "break-glass", "launch": "launch-context"}
# Kinds that count as a legitimate relationship (an objection still applies); break-glass overrides.
RELATIONSHIP_KINDS = ("declared", "launch")


def grant(store: GrantStore, caller: Caller, kind: str, patient_id: str, reason: str, now: datetime,
          *, length: timedelta | None = None, step_up_aal: int = assurance.DEFAULT_STEP_UP) -> GrantRow:
    """Record a declared relationship or break-glass for `patient_id` with its audit record, after
    checking the caller may (their role; for break-glass, a sign-in of at least `step_up_aal`) and the
    reason says something (Forbidden / Unauthorized / BadRequest otherwise; nothing is granted then)."""
    activity, default = KINDS[kind]
    if caller.kind != "user" or not caller.organisation or not caller.role or activity not in caller.activities:
        raise Forbidden(f"your role does not allow {INTERACTIONS[kind].replace('-', ' ')}")
    if kind == "break-glass":
        assurance.require(caller, step_up_aal, "breaking the glass")
    text = " ".join(reason.split())
    if len(text) < MIN_REASON:
        raise BadRequest(f"give a reason of at least {MIN_REASON} characters")
    if len(text) > MAX_REASON:
        raise BadRequest(f"a reason is at most {MAX_REASON} characters")
    created = stored_instant(now)
    until = stored_instant(now + (length or default))
    row = GrantRow(str(uuid.uuid4()), kind, caller.agent_id, caller.organisation, caller.role, patient_id, text,
                   created, until, None)
    who = dataclasses.replace(caller, purpose=ETREAT) if kind == "break-glass" else caller
    # The audit record names the grant (an id, never the reason), so reports can join the two.
    store.add(row, AuditRecord(INTERACTIONS[kind], 201, who, created, "Patient", patient_id, None, (patient_id,),
                               f"grant={row.grant_id}"))
    return row


def ensure_launch(store: GrantStore, caller: Caller, patient_id: str, context: str, now: datetime) -> GrantRow | None:
    """The relationship a launch context asserts (access/on_behalf.py): granted and audited once, then
    reused while it lasts; None when one is already in force."""
    if store.in_force(caller.agent_id, patient_id, "launch", stored_instant(now)):
        return None
    return grant(store, caller, "launch", patient_id, f"launch context: {context}", now)


def end_expired(store: GrantStore, now: datetime) -> list[GrantRow]:
    """End grants whose time is up, each with an audit record ("override stopped" for break-glass)."""
    stamp = stored_instant(now)

    def record(row: GrantRow) -> AuditRecord:
        caller = Caller(kind="user", agent_id=row.agent_id, role=row.role, organisation=row.organisation,
                        purpose=ETREAT if row.kind == "break-glass" else "TREAT")
        return AuditRecord(f"{INTERACTIONS[row.kind]}-ended", 200, caller, stamp, "Patient", row.patient_id, None,
                           (row.patient_id,))
    return store.end_expired(stamp, record)
