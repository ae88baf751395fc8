"""`sharedcare demo` (issue 4): a synthetic London generated, loaded into a fresh embedded store and
served, with the demo logins written to `logins.json` (username, password, kind, role, organisation)
and made local accounts (issue 5), and a read-only API client whose credentials get a token."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sharedcare.access import accounts
from sharedcare.app import create_app
from sharedcare.cli import app
from sharedcare.settings import Settings
from sharedcare.storage import database
from sharedcare.storage.accounts import AccountStore


def test_the_demo_loads_a_synthetic_london_and_writes_its_logins(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["demo", "--no-serve", "--people", "60", "--dir", str(tmp_path)])
    assert done.exit_code == 0, done.output
    everything = json.loads((tmp_path / "logins.json").read_text())
    clients = [login for login in everything if login["kind"] == "client"]
    logins = [login for login in everything if login["kind"] != "client"]
    assert {tuple(sorted(login)) for login in logins} == {("kind", "organisation", "password", "role", "username")}
    assert {login["kind"] for login in logins} == {"staff", "patient"}
    assert [c["role"] for c in clients] == ["system/*.rs"]
    assert {"gp", "paramedic", "social-worker"} <= {login["role"] for login in logins}
    assert len({login["username"] for login in logins}) == len(logins)
    engine = database.make_engine(f"sqlite:///{tmp_path / 'sharedcare.db'}")
    try:
        store = AccountStore(engine)
        for login in logins:  # each login is an account that signs in with its password, and only with it
            account = accounts.authenticate(store, login["username"], login["password"])
            assert account is not None
            assert account.kind == login["kind"]
            assert accounts.authenticate(store, login["username"], login["password"] + "x") is None
            if login["role"] == "paramedic":
                assert account.roles[0][1] == "R8003"
    finally:
        engine.dispose()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'sharedcare.db'}")
    with TestClient(create_app(settings)) as client:
        assert client.get("/fhir/Patient").status_code == 401  # nothing without a token
        token = client.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"},
                            auth=(clients[0]["username"], clients[0]["password"])).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        patients = client.get("/fhir/Patient?general-practitioner:missing=false&_total=accurate&_count=1").json()
        assert patients["total"] == 60  # one GP record each; other sources' Patients are theirs
        assert client.get("/fhir/Immunization?_total=accurate&_count=1").json()["total"] > 0
        gp = client.get("/fhir/Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|RRU").json()
        assert gp["entry"][0]["resource"]["name"] == "London Ambulance Service NHS Trust"
    import sqlite3

    # The trusts' HL7 v2 feeds and the 111 and social care extracts came through the inbox, every message
    # written, as the trust that sent it.
    with sqlite3.connect(tmp_path / "sharedcare.db") as conn:
        by_kind = dict(conn.execute("SELECT kind, count(*) FROM inbox_message GROUP BY kind").fetchall())
        not_done = conn.execute("SELECT count(*) FROM inbox_message WHERE status != 'done'").fetchone()[0]
        from_feeds = conn.execute(
            "SELECT count(*) FROM resource WHERE res_type = 'Encounter' AND source_org IN "
            "(SELECT ods FROM feed_source WHERE feeds LIKE '%hl7v2%')").fetchone()[0]
    assert by_kind.get("hl7v2", 0) > 0
    assert by_kind.get("csv", 0) > 0
    assert not_done == 0
    assert from_feeds > 0
    again = CliRunner().invoke(app, ["demo", "--no-serve", "--people", "30", "--dir", str(tmp_path)])
    assert again.exit_code == 0, again.output  # a second run starts afresh
    second = json.loads((tmp_path / "logins.json").read_text())
    client_login = next(login for login in second if login["kind"] == "client")
    with TestClient(create_app(settings)) as client:
        token = client.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"},
                            auth=(client_login["username"], client_login["password"])).json()["access_token"]
        assert client.get("/fhir/Patient?general-practitioner:missing=false&_total=accurate&_count=1",
                          headers={"Authorization": f"Bearer {token}"}).json()["total"] == 30


def test_a_demo_folder_that_cannot_be_written_is_refused_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    done = CliRunner().invoke(app, ["demo", "--no-serve", "--people", "5", "--dir", str(tmp_path / "a-file")])
    assert done.exit_code == 1
    assert "could not prepare the demo" in done.output
    assert (tmp_path / "a-file").read_text() == ""  # nothing already there was lost
