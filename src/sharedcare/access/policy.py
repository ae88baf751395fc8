"""The access policy seam. Every Repository call asks the policy; nothing else decides access.

Safety property 2: the policy is compiled into the query itself (`visible_clause`), never applied as a
filter afterwards, so totals and paging cannot leak; a resource the caller may not see is reported by
the Repository exactly like one that does not exist (404).

This issue ships the system policy (a node acting for itself may do everything). The access issue adds
roles, legitimate relationships, break-glass, objections and sensitive labels behind this same
Protocol.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Table, true

from sharedcare.access.context import Caller


class Policy(Protocol):
    def visible_clause(self, caller: Caller, table: Table) -> ColumnElement[bool]:
        """A WHERE clause restricting `table` (resource or resource_history) to what the caller may see."""

    def visible_key(self, caller: Caller) -> Hashable | None:
        """A key such that callers with equal keys get identical `visible_clause`s (structure and bound
        values), so the Repository may compile a statement once per key; None: compile every time."""

    def may_search(self, caller: Caller, resource_type: str) -> bool:
        """Whether the caller may search this type at all (False -> 403 whatever exists)."""

    def may_write(self, caller: Caller, resource_type: str, resource: dict[str, Any] | None) -> bool:
        """Whether the caller may write (resource is the new content; None for delete)."""


class SystemPolicy:
    """A system caller of this node may do everything; other callers nothing until sign-in exists."""

    def visible_clause(self, caller: Caller, table: Table) -> ColumnElement[bool]:
        return true() if caller.kind == "system" else ~true()

    def visible_key(self, caller: Caller) -> Hashable | None:
        return caller.kind == "system"

    def may_search(self, caller: Caller, resource_type: str) -> bool:
        return caller.kind == "system"

    def may_write(self, caller: Caller, resource_type: str, resource: dict[str, Any] | None) -> bool:
        return caller.kind == "system"
