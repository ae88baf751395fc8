"""Local accounts in the database (`account`, `account_role`): the only SQL for them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from sharedcare.storage.tables import account, account_role


@dataclass(frozen=True)
class AccountRow:
    username: str
    kind: str
    password_hash: str
    nhs_number: str | None
    disabled: bool
    roles: tuple[tuple[str, str], ...]  # (organisation, job role)


class AccountExists(Exception):
    """An account with this username is already there (nothing was changed)."""


class AccountStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, username: str, kind: str, password_hash: str, nhs_number: str | None,
            roles: tuple[tuple[str, str], ...]) -> None:
        """One transaction: the account and its roles, or nothing (AccountExists when taken)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(account).values(
                    username=username, kind=kind, password_hash=password_hash, nhs_number=nhs_number,
                    created=datetime.now(UTC).isoformat(timespec="seconds"), disabled=False))
                if roles:
                    conn.execute(insert(account_role), [
                        {"username": username, "organisation": org, "job_role": role} for org, role in roles])
        except IntegrityError as exc:
            raise AccountExists(username) from exc

    def get(self, username: str) -> AccountRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(account).where(account.c.username == username)).first()
            if row is None:
                return None
            roles = conn.execute(select(account_role.c.organisation, account_role.c.job_role)
                                 .where(account_role.c.username == username)
                                 .order_by(account_role.c.organisation, account_role.c.job_role)).all()
        return AccountRow(row.username, row.kind, row.password_hash, row.nhs_number, bool(row.disabled),
                          tuple((r.organisation, r.job_role) for r in roles))

    def set_disabled(self, username: str, disabled: bool) -> bool:
        """Disable or enable an account; False when there is no such account."""
        with self.engine.begin() as conn:
            return conn.execute(update(account).where(account.c.username == username)
                                .values(disabled=disabled)).rowcount == 1

    def set_roles(self, username: str, roles: tuple[tuple[str, str], ...]) -> None:
        """Replace a staff account's role profiles (one transaction)."""
        with self.engine.begin() as conn:
            conn.execute(delete(account_role).where(account_role.c.username == username))
            if roles:
                conn.execute(insert(account_role), [
                    {"username": username, "organisation": org, "job_role": role} for org, role in roles])

    def usernames(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(account.c.username).order_by(account.c.username)).scalars())
