"""Local accounts (issue 5): staff and patients of the embedded default and the demo sign in with a
username and password, kept only as an argon2id hash. Every bad request is refused with a reason
and makes nothing; an unknown username and a wrong password get the same answer."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from sharedcare.access import accounts
from sharedcare.access.roles import Activity
from sharedcare.app import Services
from sharedcare.cli import app
from sharedcare.settings import Settings, get_settings
from sharedcare.storage.accounts import AccountStore
from sharedcare.storage.tables import account

PASSWORD = "correct horse battery"


@pytest.fixture
def accounts_store(store: Services) -> AccountStore:
    return AccountStore(store.engine)


def test_a_staff_account_signs_in_with_its_password_and_carries_its_roles(accounts_store: AccountStore) -> None:
    accounts.add(accounts_store, "amara.okafor", "staff", PASSWORD, roles=(("RRU", "R8003"), ("RJ1", "R8000")))
    signed_in = accounts.authenticate(accounts_store, "amara.okafor", PASSWORD)
    assert signed_in is not None
    assert signed_in.roles == (("RJ1", "R8000"), ("RRU", "R8003"))
    assert Activity.AUTHOR_CARE_PLAN in signed_in.activities_at("RJ1")
    assert Activity.AUTHOR_CARE_PLAN not in signed_in.activities_at("RRU")
    assert signed_in.activities_at("R1H") == frozenset()  # no role there, no activities there


def test_a_wrong_password_and_an_unknown_username_get_the_same_answer(accounts_store: AccountStore) -> None:
    accounts.add(accounts_store, "jo.bloggs", "staff", PASSWORD, roles=(("F84001", "R8009"),))
    assert accounts.authenticate(accounts_store, "jo.bloggs", PASSWORD + "!") is None
    assert accounts.authenticate(accounts_store, "no.such.person", PASSWORD) is None
    assert accounts.authenticate(accounts_store, "Not A Username;--", PASSWORD) is None


def test_the_password_is_kept_only_as_an_argon2id_hash(store: Services, accounts_store: AccountStore) -> None:
    accounts.add(accounts_store, "patient-9000000009", "patient", PASSWORD, nhs_number="9000000009")
    with store.engine.connect() as conn:
        stored = conn.execute(select(account.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_a_taken_username_is_refused_and_the_first_account_is_unchanged(accounts_store: AccountStore) -> None:
    accounts.add(accounts_store, "sam", "staff", PASSWORD, roles=(("RRU", "R8003"),))
    with pytest.raises(accounts.AccountExists):
        accounts.add(accounts_store, "sam", "staff", "another password here", roles=(("RJ1", "R8000"),))
    signed_in = accounts.authenticate(accounts_store, "sam", PASSWORD)
    assert signed_in is not None
    assert signed_in.roles == (("RRU", "R8003"),)


@pytest.mark.parametrize(("username", "kind", "password", "nhs_number", "roles", "reason"), [
    ("Bad Name", "staff", PASSWORD, None, (("RRU", "R8003"),), "username"),
    ("ok.name", "staff", "short", None, (("RRU", "R8003"),), "at least 12"),
    ("ok.name", "staff", PASSWORD, None, (), "at least one role"),
    ("ok.name", "staff", PASSWORD, None, (("RRU", "R9999"),), "not a known SDS job role"),
    ("ok.name", "staff", PASSWORD, None, (("r u", "R8003"),), "not an ODS organisation code"),
    ("ok.name", "staff", PASSWORD, "9000000009", (("RRU", "R8003"),), "does not carry an NHS number"),
    ("ok.name", "patient", PASSWORD, "9000000001", (), "valid NHS number"),
    ("ok.name", "patient", PASSWORD, None, (), "valid NHS number"),
    ("ok.name", "patient", PASSWORD, "9000000009", (("RRU", "R8003"),), "no staff roles"),
    ("ok.name", "robot", PASSWORD, None, (), "staff or a patient"),
])
def test_a_bad_request_is_refused_with_its_reason_and_makes_nothing(
        accounts_store: AccountStore, username: str, kind: str, password: str, nhs_number: str | None,
        roles: tuple[tuple[str, str], ...], reason: str) -> None:
    with pytest.raises(accounts.AccountError, match=reason):
        accounts.add(accounts_store, username, kind, password, nhs_number=nhs_number, roles=roles)
    assert accounts_store.usernames() == []


def test_the_cli_adds_accounts_and_prints_a_made_up_password_once(
        store: Services, settings: Settings, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    runner = CliRunner()
    made = runner.invoke(app, ["users", "add", "crew.one", "--role", "RRU:R8003"])
    assert made.exit_code == 0, made.output
    printed = json.loads(made.stdout)
    assert accounts.authenticate(AccountStore(store.engine), "crew.one", printed["password"]) is not None
    chosen = runner.invoke(app, ["users", "add", "patient-one", "--nhs-number", "9000000009", "--password-stdin"],
                           input=PASSWORD + "\n")
    assert chosen.exit_code == 0, chosen.output
    assert "password" not in json.loads(chosen.stdout)
    assert accounts.authenticate(AccountStore(store.engine), "patient-one", PASSWORD) is not None
    again = runner.invoke(app, ["users", "add", "crew.one", "--role", "RRU:R8003"])
    assert again.exit_code == 1
    assert "already exists" in again.output
    bad = runner.invoke(app, ["users", "add", "crew.two", "--role", "RRU"])
    assert bad.exit_code == 2
    assert "ODS:JOBROLE" in bad.output
    listed = runner.invoke(app, ["users", "list"])
    assert listed.stdout.split() == ["crew.one", "patient-one"]
