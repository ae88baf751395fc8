"""The command line: `load` (bundles and NDJSON, with a progress bar) and `db upgrade`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharedcare.cli import app
from sharedcare.settings import get_settings
from sharedcare.storage import database

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "cli.db"
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("SHAREDCARE_GC_FREEZE", "false")  # the test process is not a long-lived server
    get_settings.cache_clear()
    yield db
    get_settings.cache_clear()


def is_current(url: str) -> bool:
    engine = database.make_engine(url)
    try:
        return database.is_current(engine)
    finally:
        engine.dispose()


def count(db: Path, table: str = "resource") -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_load_a_transaction_bundle_and_ndjson(env: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "b.json"
    bundle.write_text('{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1",'
                      '"resource":{"resourceType":"Patient","gender":"female"},'
                      '"request":{"method":"POST","url":"Patient"}}]}')
    nd = tmp_path / "r.ndjson"
    nd.write_text('{"resourceType":"Patient","id":"p1","gender":"male"}\n\n'
                  '{"resourceType":"Organization","name":"Surgery"}\n')
    result = runner.invoke(app, ["load", str(bundle), str(nd)])
    assert result.exit_code == 0, result.output
    assert "loaded 3 resources from 2 of 2 files" in result.output
    assert count(env) == 3 + 2  # and one Provenance per message: the bundle, and the NDJSON file's one part
    again = runner.invoke(app, ["load", str(bundle), str(nd)])
    assert again.exit_code == 0, again.output
    assert "loaded 0 resources from 2 of 2 files (2 parts loaded before, not again)" in again.output
    assert count(env) == 5


def test_load_goes_through_the_inbox_and_can_name_the_source(env: Path, tmp_path: Path) -> None:
    import json
    import sqlite3

    assert runner.invoke(app, ["sources", "add", "E85001", "--ods", "E85001", "--name", "Practice",
                               "--feeds", "fhir"]).exit_code == 0
    nd = tmp_path / "gp.ndjson"
    nd.write_text('{"resourceType":"Patient","id":"g1","gender":"male"}\n')
    result = runner.invoke(app, ["load", "--source", "E85001", str(nd)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(env) as conn:
        data = conn.execute("SELECT data FROM resource WHERE res_type = 'Patient'").fetchone()[0]
        inbox = conn.execute("SELECT source_id, kind, status FROM inbox_message").fetchall()
    assert inbox == [("E85001", "ndjson", "done")]
    from sharedcare.storage import codec

    assert json.loads(codec.decode(data))["meta"]["source"].endswith("E85001")
    unknown = runner.invoke(app, ["load", "--source", "nobody", str(nd)])
    assert unknown.exit_code == 2


def test_load_reports_a_bad_file_and_keeps_the_good_ones(env: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.ndjson"
    good.write_text('{"resourceType":"Patient","gender":"male"}\n')
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType":"Bundle","type":"transaction","entry":[{"resource":'
                   '{"resourceType":"Patient","gender":"nonsense"},"request":{"method":"POST","url":"Patient"}}]}')
    result = runner.invoke(app, ["load", str(good), str(bad)])
    assert result.exit_code == 1
    assert "bad.json" in result.output
    assert "nonsense" not in result.output  # no record content in messages
    assert count(env) == 1 + 1  # the good file's Patient and its Provenance
    assert count(env, "inbox_message") == 2  # the bad bundle kept, as a dead letter


def test_db_upgrade_creates_the_schema(env: Path) -> None:
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert is_current(f"sqlite:///{env}")


def test_db_upgrade_on_postgresql(postgres, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    url = postgres.create_database("cli_upgrade")
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
        assert is_current(url)
    finally:
        get_settings.cache_clear()


def test_users_person_records_who_a_member_of_staff_is(env: Path) -> None:
    """`sharedcare users person`: what own- and family-record alerts compare (docs/access.md); the
    output says which details are held, never the details themselves."""
    made = runner.invoke(app, ["users", "person", "user:jo.bloggs", "--nhs-number", "9000000009",
                               "--family-name", "Bloggs", "--postcode", "e1 6an"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout) == {"agent_id": "user:jo.bloggs", "nhs_number": True, "family_name": True,
                                       "postcode": True}
    assert "9000000009" not in made.stdout
    bad = runner.invoke(app, ["users", "person", "user:jo.bloggs", "--nhs-number", "1234567890"])
    assert bad.exit_code == 2
    said = " ".join(bad.output.split())  # the console wraps long lines
    assert "NHS number is not valid" in said
    assert "nothing was changed" in said


def test_users_disable_enable_and_roles(env: Path) -> None:
    """Account changes from the command line; a refused change exits 2 and changes nothing."""
    made = runner.invoke(app, ["users", "add", "amara.okafor", "--role", "RJ1:R8000", "--role", "RRU:R8003"])
    assert made.exit_code == 0, made.output
    roles = runner.invoke(app, ["users", "roles", "amara.okafor", "--role", "RRU:R8003"])
    assert roles.exit_code == 0, roles.output
    assert json.loads(roles.stdout) == {"username": "amara.okafor", "roles": ["RRU:R8003"], "tokens_revoked": 0}
    bad = runner.invoke(app, ["users", "roles", "amara.okafor", "--role", "RJ1:R9999"])
    assert bad.exit_code == 2
    assert "nothing was changed" in " ".join(bad.output.split())
    off = runner.invoke(app, ["users", "disable", "amara.okafor"])
    assert json.loads(off.stdout) == {"username": "amara.okafor", "disabled": True, "tokens_revoked": 0}
    assert json.loads(runner.invoke(app, ["users", "enable", "amara.okafor"]).stdout)["disabled"] is False
    missing = runner.invoke(app, ["users", "disable", "no.such.person"])
    assert missing.exit_code == 2
    assert "no account" in missing.output
