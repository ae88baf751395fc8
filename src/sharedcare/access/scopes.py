"""SMART App Launch 2.0 scopes: what a token may do, as its scopes say.

A resource scope is `<context>/<resource type or *>.<permissions>[?<param>=<value>[&...]]`:
- context `patient` (one patient's compartment), `user` (what the signed-in user may see) or
  `system` (a backend service, no user);
- permissions a non-empty subset of `cruds` in that order (create, read, update, delete, search);
  SMART 1.0's `read`, `write` and `*` are accepted as `rs`, `cud` and `cruds`;
- an optional granular restriction, e.g. `patient/Observation.rs?category=vital-signs`, which limits
  reads and searches to resources matching those search parameters (the query compiler applies it).
Other scopes (`openid`, `fhirUser`, `launch`, `launch/patient`, `offline_access`, `online_access`)
ask for identity or launch context and grant no access to resources.

A scope grants nothing beyond what the caller's role and relationships allow: scopes narrow access,
never widen it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
PERMISSIONS = "cruds"
V1 = {"read": "rs", "write": "cud", "*": "cruds"}
NON_RESOURCE = frozenset({"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
                          "offline_access", "online_access"})
INTERACTIONS = {"create": "c", "read": "r", "vread": "r", "history": "r", "update": "u", "patch": "u",
                "delete": "d", "search": "s"}
_SCOPE = re.compile(r"(?P<context>[a-z]+)/(?P<type>\*|[A-Z][A-Za-z]{0,63})\.(?P<perms>[a-z*]+)(?:\?(?P<query>.+))?")


class ScopeError(ValueError):
    """A scope string that is not a valid SMART scope; the message names it and says why."""


@dataclass(frozen=True)
class Scope:
    context: str  # patient, user, system
    resource_type: str  # a resource type, or "*"
    permissions: str  # a subset of "cruds", in that order
    restriction: tuple[tuple[str, str], ...] = ()  # granular: search parameters the resources must match

    def allows(self, resource_type: str, interaction: str) -> bool:
        """Whether this scope covers `interaction` (a key of INTERACTIONS) on `resource_type`."""
        letter = INTERACTIONS.get(interaction)
        return letter is not None and letter in self.permissions and self.resource_type in ("*", resource_type)

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.restriction)
        return f"{self.context}/{self.resource_type}.{self.permissions}" + (f"?{query}" if query else "")


def parse(text: str) -> Scope | None:
    """One scope: a Scope for a resource scope, None for an identity or launch scope; ScopeError
    when it is neither."""
    if text in NON_RESOURCE:
        return None
    m = _SCOPE.fullmatch(text)
    if m is None:
        raise ScopeError(f"{text!r} is not a SMART scope (context/Type.permissions)")
    context, res_type, perms, query = m["context"], m["type"], m["perms"], m["query"]
    if context not in CONTEXTS:
        raise ScopeError(f"{text!r}: the context is patient, user or system, not {context!r}")
    perms = V1.get(perms, perms)
    if not perms or any(p not in PERMISSIONS for p in perms) or perms != "".join(p for p in PERMISSIONS
                                                                                 if p in perms):
        raise ScopeError(f"{text!r}: permissions are letters of 'cruds', each once and in that order")
    restriction: tuple[tuple[str, str], ...] = ()
    if query is not None:
        if not set(perms) <= {"r", "s"}:
            raise ScopeError(f"{text!r}: a granular scope restricts reading and searching only")
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
        if not pairs or any(not k or not v for k, v in pairs):
            raise ScopeError(f"{text!r}: a granular restriction is param=value pairs joined by '&'")
        restriction = tuple(pairs)
    return Scope(context, res_type, perms, restriction)


def parse_all(text: str | Iterable[str]) -> tuple[Scope, ...]:
    """The resource scopes of a space-separated scope string (or a list of scopes); ScopeError
    names the first invalid one."""
    items = text.split() if isinstance(text, str) else list(text)
    return tuple(s for s in (parse(item) for item in items) if s is not None)


def permits(scopes: Iterable[Scope], context: str, resource_type: str, interaction: str) -> bool:
    """Whether any scope of `context` allows the interaction on the type (restrictions aside)."""
    return any(s.context == context and s.allows(resource_type, interaction) for s in scopes)
