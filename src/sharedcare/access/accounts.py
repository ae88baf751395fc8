"""Local accounts (issue 5): staff and patients who sign in with a username and password on the
embedded default and the demo. Production sign-in goes through the identity providers instead.

Disabling an account, or taking a role profile away from it, reaches what it was already given: its
sessions and tokens (all of them, or those acting in the removed profile) are revoked at once, and a
refresh token is honoured only while its account is enabled and holds the profile it was issued for
(`still_valid`), so nothing it holds outlives the change.

Passwords are kept only as argon2id hashes (argon2-cffi's defaults). Checking a password costs the
same whether or not the account exists (an unknown username is checked against a dummy hash), so
timing does not tell a caller which usernames exist.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from nhs_number.validate import is_valid

from sharedcare.access.context import Caller
from sharedcare.access.roles import JOB_ROLES, Activity, activities
from sharedcare.storage.accounts import AccountExists, AccountStore
from sharedcare.storage.oauth import OAuthStore

USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{2,199}")
ODS_CODE = re.compile(r"[A-Z0-9]{3,12}")
MIN_PASSWORD = 12
_hasher = PasswordHasher()

__all__ = ["Account", "AccountError", "AccountExists", "add", "authenticate", "disable", "enable", "new_password",
           "set_roles", "still_valid"]
AGENT_PREFIX = {"staff": "user", "patient": "patient"}  # a local account's agent id is <prefix>:<username>


class AccountError(ValueError):
    """The account could not be made as asked; the message says why (no account was made)."""


@dataclass(frozen=True)
class Account:
    username: str
    kind: str  # staff, patient
    nhs_number: str | None
    roles: tuple[tuple[str, str], ...]  # (organisation ODS code, SDS job role)

    def activities_at(self, organisation: str) -> frozenset[Activity]:
        """What this account may do when acting for `organisation`."""
        return activities(role for org, role in self.roles if org == organisation)


@cache
def _dummy_hash() -> str:
    """What an unknown username is checked against, made on first use (not at import)."""
    return _hasher.hash(secrets.token_urlsafe(16))


def new_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


def add(store: AccountStore, username: str, kind: str, password: str, *, nhs_number: str | None = None,
        roles: tuple[tuple[str, str], ...] = ()) -> Account:
    """Make an account, after checking every part of the request; raises AccountError (or
    AccountExists for a taken username) and makes nothing when any part is wrong."""
    if not USERNAME.fullmatch(username):
        raise AccountError("a username is 3 to 200 lower-case letters, digits, '.', '_', '@' or '-', "
                           "starting with a letter or digit")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password has at least {MIN_PASSWORD} characters")
    if kind == "staff":
        if nhs_number is not None:
            raise AccountError("a staff account does not carry an NHS number")
        _check_roles(roles)
    elif kind == "patient":
        if roles:
            raise AccountError("a patient account has no staff roles")
        if nhs_number is None or not is_valid(nhs_number):
            raise AccountError("a patient account needs a valid NHS number (10 digits, modulus 11 check)")
    else:
        raise AccountError("an account is for staff or a patient")
    store.add(username, kind, _hasher.hash(password), nhs_number, tuple(sorted(set(roles))))
    return Account(username, kind, nhs_number, tuple(sorted(set(roles))))


def _check_roles(roles: tuple[tuple[str, str], ...]) -> None:
    if not roles:
        raise AccountError("a staff account needs at least one role at an organisation")
    for org, role in roles:
        if not ODS_CODE.fullmatch(org):
            raise AccountError(f"{org!r} is not an ODS organisation code")
        if role not in JOB_ROLES:
            raise AccountError(f"{role!r} is not a known SDS job role (known: {', '.join(sorted(JOB_ROLES))})")


def _agent(kind: str, username: str) -> str:
    return f"{AGENT_PREFIX[kind]}:{username}"


def _revoke(oauth: OAuthStore, agent_id: str, keep: frozenset[tuple[str | None, str | None]] | None) -> int:
    """Revoke the live tokens acting as `agent_id`, except those in a role profile in `keep`."""
    doomed = []
    for row in oauth.live_tokens_naming(agent_id):
        caller = Caller.from_json(row.context)
        if caller.agent_id == agent_id and (keep is None or (caller.organisation, caller.role) not in keep):
            doomed.append(row.token_hash)
    oauth.revoke_tokens(doomed)
    return len(doomed)


def disable(store: AccountStore, oauth: OAuthStore, username: str) -> int:
    """Disable an account and end everything it holds: its sessions and tokens (how many tokens).
    AccountError when there is no such account."""
    row = store.get(username)
    if row is None or not store.set_disabled(username, True):
        raise AccountError(f"there is no account called {username!r}")
    oauth.revoke_sessions_of(username)
    return _revoke(oauth, _agent(row.kind, username), frozenset())


def enable(store: AccountStore, username: str) -> None:
    if not store.set_disabled(username, False):
        raise AccountError(f"there is no account called {username!r}")


def set_roles(store: AccountStore, oauth: OAuthStore, username: str, roles: tuple[tuple[str, str], ...]) -> int:
    """Replace a staff account's role profiles; tokens acting in a profile it no longer holds are
    revoked (how many), and its sessions drop such a profile on their next request (SignIn.session).
    AccountError (and no change) for an unknown account, a patient account or a bad role."""
    row = store.get(username)
    if row is None:
        raise AccountError(f"there is no account called {username!r}")
    if row.kind != "staff":
        raise AccountError("only staff accounts have role profiles")
    _check_roles(roles)
    kept = tuple(sorted(set(roles)))
    store.set_roles(username, kept)
    return _revoke(oauth, _agent("staff", username), frozenset(kept))


def still_valid(store: AccountStore, caller: Caller) -> bool:
    """Whether a local account's caller context may still be acted on: the account exists, is enabled
    and (staff) holds the role profile. Callers that are not local accounts' (systems, people signed in
    through an identity provider) are not judged here."""
    kind = next((k for k, prefix in AGENT_PREFIX.items() if caller.agent_id.startswith(f"{prefix}:")), None)
    if kind is None or caller.kind not in ("user", "patient"):
        return True
    row = store.get(caller.agent_id.split(":", 1)[1])
    if row is None or row.disabled or row.kind != kind:
        return False
    return kind != "staff" or caller.role is None or (caller.organisation, caller.role) in row.roles


def authenticate(store: AccountStore, username: str, password: str) -> Account | None:
    """The account when the password is right and the account enabled; None otherwise (the same
    answer, at the same cost, for an unknown username)."""
    row = store.get(username) if USERNAME.fullmatch(username) else None
    try:
        _hasher.verify(row.password_hash if row is not None else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled:
        return None
    return Account(row.username, row.kind, row.nhs_number, row.roles)
